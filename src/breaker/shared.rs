//! The shared breakers' hot state in Redis: one Lua script runs the rules of `rules.rs`
//! atomically on the breaker's hash (state, epoch, window totals, probe counts), its window
//! (a list of the last calls, or of per-second buckets) and the permit being issued or
//! recorded, timed by Redis' own clock. Every replica sends the breaker's configuration and
//! its last persisted state with each call, so Redis holds nothing that cannot be rebuilt: a
//! hash that is missing, or older (by epoch) than the database's record, starts again from
//! that record.

use redis::aio::ConnectionManager;

use super::rules::{Cause, Config, Counts, State, WindowType};

const SCRIPT: &str = r"
local H, W, B, P = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local wtype, size, minc = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local fthr, sthr, slowms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local wait, halfc, maxhalf = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local auto, cv = ARGV[12] == '1', ARGV[13]
local pst, pep, psince = ARGV[14], tonumber(ARGV[15]), tonumber(ARGV[16])

local m = {}
local function clear_window()
  redis.call('DEL', W, B)
  m.c, m.f, m.s, m.hc, m.hf, m.hs = 0, 0, 0, 0, 0, 0
end
local v = redis.call('HMGET', H, 'st', 'ep', 'since', 'cv', 'c', 'f', 's', 'hi', 'hc', 'hf', 'hs', 'np')
if not v[1] or tonumber(v[2]) < pep then
  m.st, m.ep, m.since, m.cv, m.hi, m.np = pst, pep, psince, cv, 0, 0
  clear_window()
else
  m.st, m.ep, m.since, m.cv = v[1], tonumber(v[2]), tonumber(v[3]), v[4]
  m.c, m.f, m.s = tonumber(v[5]), tonumber(v[6]), tonumber(v[7])
  m.hi, m.hc, m.hf, m.hs, m.np = tonumber(v[8]), tonumber(v[9]), tonumber(v[10]), tonumber(v[11]), tonumber(v[12])
  if m.cv ~= cv then
    m.cv = cv
    clear_window()
  end
end

local tr = {'', '', 0, 0, 0}
local function enter(to, cause, c, f, s)
  tr = {m.st, cause, c or 0, f or 0, s or 0}
  m.st, m.ep, m.since, m.hi, m.np = to, m.ep + 1, now, 0, 0
  clear_window()
end
local function tick()
  if m.st == 'HALF_OPEN' and maxhalf > 0 and now >= m.since + maxhalf then
    enter('OPEN', 'HALF_OPEN_TIMEOUT')
  elseif m.st == 'OPEN' and auto and now >= m.since + wait then
    enter('HALF_OPEN', 'WAIT_ELAPSED')
  end
end
local function evict()
  if wtype ~= 'T' then return end
  local sec_now = math.floor(now / 1000)
  while true do
    local sec = redis.call('LINDEX', W, 0)
    if not sec or tonumber(sec) + size > sec_now then return end
    redis.call('LPOP', W)
    local b = redis.call('HMGET', B, 'c' .. sec, 'f' .. sec, 's' .. sec)
    m.c = m.c - (tonumber(b[1]) or 0)
    m.f = m.f - (tonumber(b[2]) or 0)
    m.s = m.s - (tonumber(b[3]) or 0)
    redis.call('HDEL', B, 'c' .. sec, 'f' .. sec, 's' .. sec)
  end
end
local function push(failed, slow)
  local fi, si = failed and 1 or 0, slow and 1 or 0
  if wtype == 'C' then
    redis.call('RPUSH', W, fi + 2 * si)
    while redis.call('LLEN', W) > size do
      local old = tonumber(redis.call('LPOP', W))
      m.c, m.f, m.s = m.c - 1, m.f - old % 2, m.s - math.floor(old / 2)
    end
  else
    evict()
    local sec = math.floor(now / 1000)
    local last = redis.call('LINDEX', W, -1)
    if not last or tonumber(last) < sec then
      redis.call('RPUSH', W, sec)
    else
      sec = tonumber(last)
    end
    redis.call('HINCRBY', B, 'c' .. sec, 1)
    redis.call('HINCRBY', B, 'f' .. sec, fi)
    redis.call('HINCRBY', B, 's' .. sec, si)
  end
  m.c, m.f, m.s = m.c + 1, m.f + fi, m.s + si
end
local function exceeded(c, f, s, min)
  if c == 0 or c < min then return nil end
  return f * 100 / c >= fthr or s * 100 / c >= sthr
end

local code, counted, retry = 1, 0, 0
if op == 'acquire' then
  tick()
  if m.st == 'OPEN' and now >= m.since + wait then enter('HALF_OPEN', 'WAIT_ELAPSED') end
  if m.st == 'CLOSED' or m.st == 'DISABLED' or m.st == 'METRICS_ONLY' then
    code = 1
  elseif m.st == 'HALF_OPEN' and m.hi < halfc then
    m.hi, code = m.hi + 1, 1
  else
    code, m.np = 0, m.np + 1
    if m.st == 'HALF_OPEN' then
      if maxhalf > 0 then retry = m.since + maxhalf - now else retry = 1000 end
    elseif m.st == 'OPEN' then
      retry = m.since + wait - now
    else
      retry = wait
    end
    if retry < 1 then retry = 1 end
  end
  if code == 1 then redis.call('SET', P, m.ep, 'PX', ARGV[17]) end
elseif op == 'record' then
  local permit = redis.call('GET', P)
  if not permit then return {-1} end
  if permit == 'used' then return {-2} end
  redis.call('SET', P, 'used', 'KEEPTTL')
  tick()
  if tonumber(permit) == m.ep then
    local outcome, dur = ARGV[17], tonumber(ARGV[18])
    if outcome == 'I' then
      if m.st == 'HALF_OPEN' and m.hi > 0 then m.hi = m.hi - 1 end
    else
      local failed, slow = outcome == 'F', dur > slowms
      if m.st == 'CLOSED' or m.st == 'METRICS_ONLY' then
        push(failed, slow)
        evict()
        counted = 1
        if m.st == 'CLOSED' and exceeded(m.c, m.f, m.s, minc) == true then
          enter('OPEN', 'THRESHOLDS_EXCEEDED', m.c, m.f, m.s)
        end
      elseif m.st == 'HALF_OPEN' then
        m.hc, m.hf, m.hs = m.hc + 1, m.hf + (failed and 1 or 0), m.hs + (slow and 1 or 0)
        counted = 1
        local x = exceeded(m.hc, m.hf, m.hs, halfc)
        if x == true then
          enter('OPEN', 'PROBES_FAILED', m.hc, m.hf, m.hs)
        elseif x == false then
          enter('CLOSED', 'PROBES_PASSED', m.hc, m.hf, m.hs)
        end
      end
    end
  end
elseif op == 'set' then
  enter(ARGV[17], 'MANUAL')
else
  tick()
  evict()
end
redis.call('HSET', H, 'st', m.st, 'ep', m.ep, 'since', m.since, 'cv', m.cv, 'c', m.c, 'f', m.f,
  's', m.s, 'hi', m.hi, 'hc', m.hc, 'hf', m.hf, 'hs', m.hs, 'np', m.np)
return {code, m.st, m.ep, m.since, now, tr[1], tr[2], tr[3], tr[4], tr[5], counted, retry,
  m.c, m.f, m.s, m.hc, m.hf, m.hs, m.np, m.hi}
";

/// What a script call does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op<'a> {
    /// Ask for a permit; when granted it is stored under `permit` for `ttl_ms`.
    Acquire { permit: &'a str, ttl_ms: u64 },
    /// Report the outcome of `permit` (`S`, `F` or `I`) and how long the call took.
    Record {
        permit: &'a str,
        outcome: char,
        duration_ms: u64,
    },
    /// A person's change of state.
    Set(State),
    /// Time's transitions, and the live figures.
    Snapshot,
}

/// The persisted state a missing or older hash starts again from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    pub state: State,
    pub epoch: u64,
    pub since_ms: u64,
    pub config_version: i64,
}

/// A script's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The permit is unknown (never issued, or expired).
    UnknownPermit,
    /// The permit's outcome was already recorded.
    PermitUsed,
    Done(Reply),
}

/// The breaker after the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Acquire: the permit was granted.
    pub permitted: bool,
    pub state: State,
    pub epoch: u64,
    pub since_ms: u64,
    /// Redis' clock at the call.
    pub now_ms: u64,
    /// The transition this call made, with the counts that decided it.
    pub transition: Option<(State, Cause, Counts)>,
    /// Record: the outcome counted.
    pub counted: bool,
    pub retry_after_ms: u64,
    pub window: Counts,
    pub probes: Counts,
    pub not_permitted: u64,
    pub probes_issued: u32,
}

/// The script, loaded once per connection (`EVALSHA`, falling back to `EVAL`).
pub struct SharedScript {
    script: redis::Script,
}

impl Default for SharedScript {
    fn default() -> Self {
        Self {
            script: redis::Script::new(SCRIPT),
        }
    }
}

/// The keys of breaker `name`: its hash, window list, bucket hash.
fn keys(prefix: &str, name: &str) -> [String; 3] {
    [
        format!("{prefix}:breaker:{name}"),
        format!("{prefix}:breaker:{name}:window"),
        format!("{prefix}:breaker:{name}:buckets"),
    ]
}

/// The key a permit of breaker `name` is held under (a permit presented with another
/// breaker's name is unknown there).
pub fn permit_key(prefix: &str, name: &str, permit: &str) -> String {
    format!("{prefix}:breaker:{name}:permit:{permit}")
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "CLOSED",
        State::Open => "OPEN",
        State::HalfOpen => "HALF_OPEN",
        State::ForcedOpen => "FORCED_OPEN",
        State::Disabled => "DISABLED",
        State::MetricsOnly => "METRICS_ONLY",
    }
}

fn parse_state(s: &str) -> redis::RedisResult<State> {
    Ok(match s {
        "CLOSED" => State::Closed,
        "OPEN" => State::Open,
        "HALF_OPEN" => State::HalfOpen,
        "FORCED_OPEN" => State::ForcedOpen,
        "DISABLED" => State::Disabled,
        "METRICS_ONLY" => State::MetricsOnly,
        other => return Err(bad_reply(format!("unknown state {other:?}"))),
    })
}

fn parse_cause(s: &str) -> redis::RedisResult<Cause> {
    Ok(match s {
        "THRESHOLDS_EXCEEDED" => Cause::ThresholdsExceeded,
        "WAIT_ELAPSED" => Cause::WaitElapsed,
        "PROBES_PASSED" => Cause::ProbesPassed,
        "PROBES_FAILED" => Cause::ProbesFailed,
        "HALF_OPEN_TIMEOUT" => Cause::HalfOpenTimeout,
        "MANUAL" => Cause::Manual,
        other => return Err(bad_reply(format!("unknown cause {other:?}"))),
    })
}

fn bad_reply(detail: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "unexpected breaker script reply",
        detail,
    ))
}

impl SharedScript {
    /// Runs `op` on breaker `name`. `now_ms` 0 uses Redis' clock (tests pass their own).
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        conn: &mut ConnectionManager,
        prefix: &str,
        name: &str,
        config: &Config,
        persisted: Persisted,
        op: Op<'_>,
        now_ms: u64,
    ) -> redis::RedisResult<Answer> {
        let [hash, window, buckets] = keys(prefix, name);
        let permit = match op {
            Op::Acquire { permit, .. } | Op::Record { permit, .. } => {
                permit_key(prefix, name, permit)
            }
            Op::Set(_) | Op::Snapshot => String::new(),
        };
        let mut inv = self.script.key(hash);
        inv.key(window).key(buckets).key(permit);
        let op_name = match op {
            Op::Acquire { .. } => "acquire",
            Op::Record { .. } => "record",
            Op::Set(_) => "set",
            Op::Snapshot => "snapshot",
        };
        inv.arg(op_name)
            .arg(now_ms)
            .arg(match config.window_type {
                WindowType::CountBased => "C",
                WindowType::TimeBased => "T",
            })
            .arg(config.window_size)
            .arg(config.min_calls())
            .arg(config.failure_rate_threshold.to_string())
            .arg(config.slow_call_rate_threshold.to_string())
            .arg(config.slow_call_duration_ms)
            .arg(config.wait_in_open_ms)
            .arg(config.half_open_calls)
            .arg(config.max_wait_in_half_open_ms)
            .arg(if config.automatic_transition {
                "1"
            } else {
                "0"
            })
            .arg(persisted.config_version)
            .arg(state_name(persisted.state))
            .arg(persisted.epoch)
            .arg(persisted.since_ms);
        match op {
            Op::Acquire { ttl_ms, .. } => {
                inv.arg(ttl_ms);
            }
            Op::Record {
                outcome,
                duration_ms,
                ..
            } => {
                inv.arg(outcome.to_string()).arg(duration_ms);
            }
            Op::Set(state) => {
                inv.arg(state_name(state));
            }
            Op::Snapshot => {}
        }
        let values: Vec<redis::Value> = inv.invoke_async(conn).await?;
        parse(&values)
    }
}

fn parse(values: &[redis::Value]) -> redis::RedisResult<Answer> {
    use redis::FromRedisValue;
    let int = |i: usize| -> redis::RedisResult<i64> {
        values
            .get(i)
            .ok_or_else(|| bad_reply(format!("no field {i}")))
            .and_then(|v| i64::from_redis_value_ref(v).map_err(|e| bad_reply(e.to_string())))
    };
    let text = |i: usize| -> redis::RedisResult<String> {
        values
            .get(i)
            .ok_or_else(|| bad_reply(format!("no field {i}")))
            .and_then(|v| String::from_redis_value_ref(v).map_err(|e| bad_reply(e.to_string())))
    };
    let count = |i: usize| -> redis::RedisResult<u32> {
        Ok(u32::try_from(int(i)?.max(0)).unwrap_or(u32::MAX))
    };
    let uint = |i: usize| -> redis::RedisResult<u64> { Ok(u64::try_from(int(i)?).unwrap_or(0)) };
    match int(0)? {
        -1 => return Ok(Answer::UnknownPermit),
        -2 => return Ok(Answer::PermitUsed),
        _ => {}
    }
    let from = text(5)?;
    let transition = if from.is_empty() {
        None
    } else {
        Some((
            parse_state(&from)?,
            parse_cause(&text(6)?)?,
            Counts {
                calls: count(7)?,
                failures: count(8)?,
                slow: count(9)?,
            },
        ))
    };
    Ok(Answer::Done(Reply {
        permitted: int(0)? == 1,
        state: parse_state(&text(1)?)?,
        epoch: uint(2)?,
        since_ms: uint(3)?,
        now_ms: uint(4)?,
        transition,
        counted: int(10)? == 1,
        retry_after_ms: uint(11)?,
        window: Counts {
            calls: count(12)?,
            failures: count(13)?,
            slow: count(14)?,
        },
        probes: Counts {
            calls: count(15)?,
            failures: count(16)?,
            slow: count(17)?,
        },
        not_permitted: uint(18)?,
        probes_issued: count(19)?,
    }))
}
