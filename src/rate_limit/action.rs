//! Per-caller limits on named actions (one enum, [`LimitedAction`]): a token bucket per
//! (action, caller). With Redis configured the bucket lives there and is updated by one Lua
//! script (read, refill, take, write in a single atomic step, timed by Redis' own clock), so a
//! limit holds across every replica. Without Redis, or while Redis does not answer, the same
//! quotas are enforced in process (governor's keyed GCRA): a Redis outage loosens a limit to
//! "per replica" for its duration, it never lifts it and never blocks requests on Redis: the
//! `redis` circuit breaker sends every check to the in-process buckets at once while it is
//! open, instead of each waiting for a timeout.

use std::{fmt, num::NonZeroU32, str::FromStr, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use redis::aio::ConnectionManager;

use crate::{
    error::{AppError, AppResult},
    infra::guard::{Guard, guarded},
};

/// The actions that have a per-caller limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitedAction {
    /// `login` attempts, per client address (before any password is checked).
    Login,
    /// GraphQL cost: every operation takes as many tokens as its document expands to fields.
    Cost,
    /// Mutations: one token per root mutation field.
    Mutation,
    /// Sandbox runs started (the sandbox domain charges it per `startSandboxRun`).
    SandboxRun,
}

impl LimitedAction {
    pub const ALL: [Self; 4] = [Self::Login, Self::Cost, Self::Mutation, Self::SandboxRun];

    /// The name used in `AURUM_RATE_LIMITS`, Redis keys and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Cost => "cost",
            Self::Mutation => "mutation",
            Self::SandboxRun => "sandbox",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Login => 0,
            Self::Cost => 1,
            Self::Mutation => 2,
            Self::SandboxRun => 3,
        }
    }
}

/// `count` tokens per `period`, at most `burst` at once; `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    /// Tokens added per millisecond.
    fn per_ms(self) -> f64 {
        f64::from(self.count) / (self.period.as_secs_f64() * 1000.0)
    }
}

/// The quota of every action (`AURUM_RATE_LIMITS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionQuotas([Option<Quota>; 4]);

impl ActionQuotas {
    /// The defaults, generous for real agents and operators: `login=10/1m:10`,
    /// `cost=20000/1s:50000`, `mutation=200/1s:1000`, `sandbox=30/1m:10`.
    pub const DEFAULT: &'static str =
        "login=10/1m:10,cost=20000/1s:50000,mutation=200/1s:1000,sandbox=30/1m:10";

    pub fn get(&self, action: LimitedAction) -> Option<Quota> {
        self.0[action.index()]
    }
}

impl Default for ActionQuotas {
    /// `DEFAULT`, as values (a unit test keeps the two equal).
    fn default() -> Self {
        Self::DEFAULT_PARSED
    }
}

impl ActionQuotas {
    const DEFAULT_PARSED: Self = Self([
        Some(Quota {
            count: 10,
            period: Duration::from_secs(60),
            burst: 10,
        }),
        Some(Quota {
            count: 20_000,
            period: Duration::from_secs(1),
            burst: 50_000,
        }),
        Some(Quota {
            count: 200,
            period: Duration::from_secs(1),
            burst: 1_000,
        }),
        Some(Quota {
            count: 30,
            period: Duration::from_secs(60),
            burst: 10,
        }),
    ]);
}

fn parse_period(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = if digits.is_empty() {
        1
    } else {
        digits.parse().map_err(|_| format!("bad period {s:?}"))?
    };
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)).and_then(nonzero),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("bad period {s:?} (use ms, s, m or h, e.g. 1m)")),
    };
    nonzero(Duration::from_secs(secs))
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("a period must be longer than zero".into())
    } else {
        Ok(d)
    }
}

fn parse_quota(spec: &str) -> Result<Option<Quota>, String> {
    if spec == "off" {
        return Ok(None);
    }
    let (rate, burst) = match spec.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (spec, None),
    };
    let (count, period) = rate
        .split_once('/')
        .ok_or_else(|| format!("{spec:?} is not COUNT/PERIOD[:BURST] or off"))?;
    let count: u32 = count
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("bad count in {spec:?}"))?;
    let burst: u32 = match burst {
        Some(b) => b
            .parse()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("bad burst in {spec:?}"))?,
        None => count,
    };
    Ok(Some(Quota {
        count,
        period: parse_period(period)?,
        burst,
    }))
}

/// `name=COUNT/PERIOD[:BURST]` or `name=off`, comma-separated; unnamed actions keep their
/// defaults.
impl FromStr for ActionQuotas {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut quotas = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, spec) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=COUNT/PERIOD[:BURST]"))?;
            let action = LimitedAction::ALL
                .into_iter()
                .find(|a| a.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown action {name:?} (known: {})",
                        LimitedAction::ALL.map(LimitedAction::name).join(", ")
                    )
                })?;
            quotas.0[action.index()] = parse_quota(spec.trim())?;
        }
        Ok(quotas)
    }
}

impl fmt::Display for ActionQuotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = LimitedAction::ALL
            .into_iter()
            .map(|a| match self.get(a) {
                None => format!("{}=off", a.name()),
                Some(q) => format!(
                    "{}={}/{}ms:{}",
                    a.name(),
                    q.count,
                    q.period.as_millis(),
                    q.burst
                ),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Reads, refills and writes every bucket in `KEYS` (ARGV: rate, burst, cost per key) in one
/// atomic step, and takes the costs only if every bucket holds enough: a request is charged
/// whole or not at all, in one round trip. Returns `{allowed, wait_ms, refusing key index}`.
const TOKEN_BUCKETS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens, wait, refusing = {}, 0, 0
for i = 1, #KEYS do
  local rate, burst, cost = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local have, at = tonumber(state[1]), tonumber(state[2])
  if have == nil or at == nil then
    have, at = burst, now
  end
  if now > at then
    have = math.min(burst, have + (now - at) * rate)
  end
  tokens[i] = have
  if have < cost then
    local w = math.ceil((cost - have) / rate)
    if w > wait then
      wait, refusing = w, i - 1
    end
  end
end
local allowed = 0
if wait == 0 then allowed = 1 end
for i = 1, #KEYS do
  local rate, burst, cost = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local have = tokens[i]
  if allowed == 1 then have = have - cost end
  redis.call('HSET', KEYS[i], 'tokens', tostring(have), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
end
return {allowed, wait, refusing}
";

/// How long a Redis call may take before the in-process bucket answers instead.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// The per-caller limiter.
pub struct ActionLimiter {
    quotas: ActionQuotas,
    local: [Option<DefaultKeyedRateLimiter<String>>; 4],
    clock: DefaultClock,
    redis: Option<(ConnectionManager, String)>,
    script: redis::Script,
    /// The `redis` breaker: while it refuses, the in-process buckets answer at once.
    guard: Option<Guard>,
}

fn governor_quota(q: Quota) -> Option<GovernorQuota> {
    let per_token = q.period.checked_div(q.count)?;
    let burst = NonZeroU32::new(q.burst)?;
    Some(GovernorQuota::with_period(per_token.max(Duration::from_nanos(1)))?.allow_burst(burst))
}

fn refused(action: LimitedAction, wait: Duration) -> AppError {
    metrics::counter!("aurum_rate_limited_total", "action" => action.name()).increment(1);
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    AppError::RateLimited {
        retry_after_secs: ms.div_ceil(1000).max(1),
    }
}

impl ActionLimiter {
    /// Buckets in Redis under `<prefix>:ratelimit:<action>:<caller>` when `redis` is given,
    /// its calls guarded by `guard`.
    pub fn new(
        quotas: ActionQuotas,
        redis: Option<(ConnectionManager, String)>,
        guard: Option<Guard>,
    ) -> Self {
        let local = LimitedAction::ALL.map(|a| {
            quotas
                .get(a)
                .and_then(governor_quota)
                .map(RateLimiter::keyed)
        });
        Self {
            quotas,
            local,
            clock: DefaultClock::default(),
            redis,
            script: redis::Script::new(TOKEN_BUCKETS),
            guard,
        }
    }

    /// Takes `cost` tokens of `action` from `caller`'s bucket, or refuses with
    /// `RATE_LIMITED` and the seconds to wait. A cost above the burst is charged as the burst
    /// (the document limits bound it already).
    pub async fn check(&self, action: LimitedAction, caller: &str, cost: u32) -> AppResult<()> {
        self.check_all(&[(action, cost)], caller).await
    }

    /// Takes each `(action, cost)` from `caller`'s buckets: with Redis all of them or none,
    /// in one round trip; in process, in order, stopping at the first refusal.
    pub async fn check_all(&self, charges: &[(LimitedAction, u32)], caller: &str) -> AppResult<()> {
        let charges: Vec<(LimitedAction, Quota, u32)> = charges
            .iter()
            .filter_map(|&(action, cost)| {
                let quota = self.quotas.get(action)?;
                Some((action, quota, cost.clamp(1, quota.burst)))
            })
            .collect();
        if charges.is_empty() {
            return Ok(());
        }
        if let Some((conn, prefix)) = &self.redis {
            let mut conn = conn.clone();
            let mut invocation = self.script.prepare_invoke();
            for (action, quota, cost) in &charges {
                invocation
                    .key(format!("{prefix}:ratelimit:{}:{caller}", action.name()))
                    .arg(quota.per_ms())
                    .arg(quota.burst)
                    .arg(*cost);
            }
            let call = async {
                match tokio::time::timeout(
                    REDIS_TIMEOUT,
                    invocation.invoke_async::<(u8, u64, usize)>(&mut conn),
                )
                .await
                {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 250 ms".to_owned()),
                }
            };
            match guarded(self.guard.as_ref(), call).await {
                Ok(Ok((1, _, _))) => return Ok(()),
                Ok(Ok((_, wait_ms, refusing))) => {
                    let action = charges.get(refusing).map_or(charges[0].0, |c| c.0);
                    return Err(refused(action, Duration::from_millis(wait_ms)));
                }
                Ok(Err(reason)) => {
                    metrics::counter!("aurum_rate_limit_fallback_total").increment(1);
                    tracing::debug!(
                        error = reason,
                        "Redis rate limit failed; this replica's bucket answers"
                    );
                }
                // The breaker is open: the in-process bucket answers without trying Redis.
                Err(_) => metrics::counter!("aurum_rate_limit_fallback_total").increment(1),
            }
        }
        for (action, _, cost) in charges {
            self.check_local(action, caller, cost)?;
        }
        Ok(())
    }

    fn check_local(&self, action: LimitedAction, caller: &str, cost: u32) -> AppResult<()> {
        let Some(limiter) = &self.local[action.index()] else {
            return Ok(());
        };
        let n = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&caller.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refused(action, not_until.wait_time_from(self.clock.now()))),
            // Cost is clamped to the burst above, so capacity always suffices.
            Err(_) => Err(refused(action, Duration::from_secs(1))),
        }
    }

    /// Forgets in-process buckets that are full again.
    pub fn forget_idle(&self) {
        for limiter in self.local.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_constant_matches_the_parsed_defaults() {
        assert_eq!(
            ActionQuotas::from_str(ActionQuotas::DEFAULT),
            Ok(ActionQuotas::default())
        );
    }

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let q = ActionQuotas::from_str("login=3/10s, mutation=off,cost=5/1m:7");
        let Ok(q) = q else { panic!("{q:?}") };
        assert_eq!(
            q.get(LimitedAction::Login),
            Some(Quota {
                count: 3,
                period: Duration::from_secs(10),
                burst: 3
            })
        );
        assert_eq!(q.get(LimitedAction::Mutation), None);
        assert_eq!(q.get(LimitedAction::Cost).map(|q| q.burst), Some(7));
        assert_eq!(q.get(LimitedAction::SandboxRun).map(|q| q.count), Some(30));
        for bad in [
            "nope=1/1s",
            "login=1",
            "login=0/1s",
            "login=1/1x",
            "login=1/1s:0",
            "login",
        ] {
            assert!(ActionQuotas::from_str(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn local_buckets_refuse_past_the_burst_per_caller() {
        let Ok(q) = ActionQuotas::from_str("mutation=1/1m:3") else {
            panic!("quota")
        };
        let l = ActionLimiter::new(q, None, None);
        for _ in 0..3 {
            assert!(l.check(LimitedAction::Mutation, "u:a", 1).await.is_ok());
        }
        let refused = l.check(LimitedAction::Mutation, "u:a", 1).await;
        assert!(
            matches!(refused, Err(AppError::RateLimited { retry_after_secs }) if (50..=60).contains(&retry_after_secs))
        );
        assert!(l.check(LimitedAction::Mutation, "u:b", 1).await.is_ok());
        // A cost above the burst is charged as the burst: it passes once, on a full bucket.
        assert!(l.check(LimitedAction::Mutation, "u:c", 99).await.is_ok());
        assert!(l.check(LimitedAction::Mutation, "u:c", 1).await.is_err());
    }
}
