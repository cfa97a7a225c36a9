//! The rules on fixed scenarios (resilience4j's documented behaviour, the prototype's rule),
//! then on random sequences against a small reference model that recomputes everything from
//! the full list of calls.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn fail(m: &mut Machine, c: &Config, now: u64) -> Option<Transition> {
    let Decision::Permitted { epoch } = m.acquire(c, now).0 else {
        panic!("refused in {:?}", m.state)
    };
    m.record(c, epoch, Outcome::Failure, 1, now).1
}

fn succeed(m: &mut Machine, c: &Config, now: u64) -> Option<Transition> {
    let Decision::Permitted { epoch } = m.acquire(c, now).0 else {
        panic!("refused in {:?}", m.state)
    };
    m.record(c, epoch, Outcome::Success, 1, now).1
}

#[test]
fn defaults_are_resilience4js() {
    let d = Config::DEFAULT;
    assert_eq!(
        (d.window_size, d.minimum_calls, d.half_open_calls),
        (100, 100, 10)
    );
    assert_eq!(
        (d.failure_rate_threshold, d.slow_call_rate_threshold),
        (50.0, 100.0)
    );
    assert_eq!(
        (d.slow_call_duration_ms, d.wait_in_open_ms),
        (60_000, 60_000)
    );
    assert_eq!(d.max_wait_in_half_open_ms, 0);
    assert!(!d.automatic_transition);
    assert_eq!(d.problem(), None);
    assert_eq!(Config::PROTOTYPE.problem(), None);
}

#[test]
fn the_prototype_rule_opens_on_five_consecutive_failures_for_30_s_then_3_probes() {
    let c = Config::PROTOTYPE;
    let mut m = Machine::new(State::Closed, 0, 0);
    for _ in 0..4 {
        assert_eq!(fail(&mut m, &c, 10), None);
    }
    // A success among them: not five in a row yet.
    assert_eq!(succeed(&mut m, &c, 10), None);
    for _ in 0..4 {
        assert_eq!(fail(&mut m, &c, 20), None);
    }
    let opened = fail(&mut m, &c, 30).expect("the fifth failure in a row opens it");
    assert_eq!(
        (opened.from, opened.to, opened.cause),
        (State::Closed, State::Open, Cause::ThresholdsExceeded)
    );
    assert_eq!(
        m.acquire(&c, 30 + 29_999).0,
        Decision::Refused { retry_after_ms: 1 }
    );
    let (d, t) = m.acquire(&c, 30 + 30_000);
    assert!(matches!(d, Decision::Permitted { .. }));
    assert_eq!(t.map(|t| t.to), Some(State::HalfOpen));
    let e = m.epoch;
    assert!(matches!(
        m.acquire(&c, 30_031).0,
        Decision::Permitted { .. }
    ));
    assert!(matches!(
        m.acquire(&c, 30_032).0,
        Decision::Permitted { .. }
    ));
    // The fourth caller waits: 3 probes, not 4.
    assert!(matches!(m.acquire(&c, 30_033).0, Decision::Refused { .. }));
    assert_eq!(m.record(&c, e, Outcome::Success, 1, 30_040), (true, None));
    assert_eq!(m.record(&c, e, Outcome::Success, 1, 30_041), (true, None));
    let closed = m
        .record(&c, e, Outcome::Success, 1, 30_042)
        .1
        .expect("closes");
    assert_eq!(
        (closed.to, closed.cause),
        (State::Closed, Cause::ProbesPassed)
    );
}

#[test]
fn below_the_minimum_no_rate_is_computed_and_nothing_opens() {
    let c = Config {
        window_size: 10,
        minimum_calls: 4,
        ..Config::DEFAULT
    };
    let mut m = Machine::new(State::Closed, 0, 0);
    for _ in 0..3 {
        assert_eq!(fail(&mut m, &c, 0), None);
    }
    assert_eq!(m.metrics(&c, 0).failure_rate, None);
    assert!(fail(&mut m, &c, 0).is_some());
}

#[test]
fn slow_calls_open_it_when_the_slow_rate_reaches_its_threshold() {
    let c = Config {
        window_size: 4,
        minimum_calls: 4,
        slow_call_rate_threshold: 50.0,
        slow_call_duration_ms: 100,
        ..Config::DEFAULT
    };
    let mut m = Machine::new(State::Closed, 0, 0);
    let e = m.epoch;
    // Exactly the threshold is not slow; above it is.
    assert_eq!(m.record(&c, e, Outcome::Success, 100, 0), (true, None));
    assert_eq!(m.record(&c, e, Outcome::Success, 101, 0), (true, None));
    assert_eq!(m.record(&c, e, Outcome::Success, 5, 0), (true, None));
    let t = m.record(&c, e, Outcome::Success, 500, 0).1.expect("opens");
    assert_eq!(t.rates, Some((0.0, 50.0)));
}

#[test]
fn a_time_based_window_forgets_calls_older_than_its_seconds() {
    let c = Config {
        window_type: WindowType::TimeBased,
        window_size: 2,
        minimum_calls: 3,
        ..Config::DEFAULT
    };
    let mut m = Machine::new(State::Closed, 0, 0);
    assert_eq!(fail(&mut m, &c, 0), None);
    assert_eq!(fail(&mut m, &c, 999), None);
    // Second 2: second 0 has left the window (it holds seconds 1 and 2).
    assert_eq!(fail(&mut m, &c, 2_000), None);
    assert_eq!(m.metrics(&c, 2_000).counts.calls, 1);
    assert!(fail(&mut m, &c, 2_500).is_none());
    assert!(fail(&mut m, &c, 2_600).is_some());
}

#[test]
fn stale_permits_and_ignored_probes() {
    let c = Config {
        half_open_calls: 1,
        ..Config::PROTOTYPE
    };
    let mut m = Machine::new(State::Open, 3, 0);
    let (Decision::Permitted { epoch }, _) = m.acquire(&c, 30_000) else {
        panic!("probe")
    };
    assert!(matches!(m.acquire(&c, 30_000).0, Decision::Refused { .. }));
    // An ignored probe gives its permit back.
    assert_eq!(
        m.record(&c, epoch, Outcome::Ignored, 1, 30_001),
        (false, None)
    );
    assert!(matches!(
        m.acquire(&c, 30_002).0,
        Decision::Permitted { .. }
    ));
    // An outcome from an earlier epoch does not count.
    assert_eq!(m.record(&c, 3, Outcome::Failure, 1, 30_003), (false, None));
    assert_eq!(m.state, State::HalfOpen);
}

#[test]
fn half_open_times_out_and_automatic_transition_needs_no_call() {
    let c = Config {
        automatic_transition: true,
        max_wait_in_half_open_ms: 500,
        ..Config::PROTOTYPE
    };
    let mut m = Machine::new(State::Open, 1, 0);
    assert_eq!(m.tick(&c, 29_999), None);
    assert_eq!(m.tick(&c, 30_000).map(|t| t.to), Some(State::HalfOpen));
    let t = m.tick(&c, 30_500).expect("times out");
    assert_eq!((t.to, t.cause), (State::Open, Cause::HalfOpenTimeout));
}

#[test]
fn manual_states() {
    let c = Config::PROTOTYPE;
    let mut m = Machine::new(State::Closed, 0, 0);
    m.set(State::ForcedOpen, 0);
    assert!(matches!(
        m.acquire(&c, 1_000_000).0,
        Decision::Refused { .. }
    ));
    m.set(State::Disabled, 0);
    for _ in 0..20 {
        assert_eq!(fail(&mut m, &c, 0), None);
    }
    m.set(State::MetricsOnly, 0);
    for _ in 0..20 {
        assert_eq!(fail(&mut m, &c, 0), None);
    }
    assert_eq!(m.metrics(&c, 0).failure_rate, Some(100.0));
    let t = m.set(State::Closed, 0);
    assert_eq!((t.from, t.cause), (State::MetricsOnly, Cause::Manual));
    assert_eq!(m.metrics(&c, 0).counts, Counts::default());
}

#[test]
fn validation_names_the_field() {
    let bad = [
        (
            Config {
                window_size: 0,
                ..Config::DEFAULT
            },
            "slidingWindowSize",
        ),
        (
            Config {
                minimum_calls: 0,
                ..Config::DEFAULT
            },
            "minimumNumberOfCalls",
        ),
        (
            Config {
                failure_rate_threshold: 0.5,
                ..Config::DEFAULT
            },
            "failureRateThreshold",
        ),
        (
            Config {
                failure_rate_threshold: f64::NAN,
                ..Config::DEFAULT
            },
            "failureRateThreshold",
        ),
        (
            Config {
                slow_call_rate_threshold: 101.0,
                ..Config::DEFAULT
            },
            "slowCallRateThreshold",
        ),
        (
            Config {
                slow_call_duration_ms: 0,
                ..Config::DEFAULT
            },
            "slowCallDurationThresholdMs",
        ),
        (
            Config {
                wait_in_open_ms: 0,
                ..Config::DEFAULT
            },
            "waitDurationInOpenStateMs",
        ),
        (
            Config {
                half_open_calls: 0,
                ..Config::DEFAULT
            },
            "permittedNumberOfCallsInHalfOpenState",
        ),
    ];
    for (config, field) in bad {
        assert_eq!(config.problem().map(|p| p.0), Some(field));
    }
}

// ---- the reference model -------------------------------------------------------------------

/// The rules written the obvious way: every call of the period kept, the window recomputed
/// from them on every question.
#[derive(Debug, Clone)]
struct Model {
    state: State,
    epoch: u64,
    since: u64,
    /// (time, failed, slow) of every counted call in this period.
    calls: Vec<(u64, bool, bool)>,
    issued: u32,
    not_permitted: u64,
}

impl Model {
    fn window(&self, c: &Config, now: u64) -> (u32, u32, u32) {
        let kept: Vec<_> = match (self.state, c.window_type) {
            (State::HalfOpen, _) | (_, WindowType::CountBased) => {
                let n = if self.state == State::HalfOpen {
                    self.calls.len()
                } else {
                    c.window_size as usize
                };
                self.calls.iter().rev().take(n).collect()
            }
            (_, WindowType::TimeBased) => self
                .calls
                .iter()
                .filter(|(t, ..)| t / 1000 + u64::from(c.window_size) > now / 1000)
                .collect(),
        };
        let count =
            |f: fn(&&(u64, bool, bool)) -> bool| kept.iter().filter(|x| f(x)).count() as u32;
        (kept.len() as u32, count(|x| x.1), count(|x| x.2))
    }

    fn rates(&self, c: &Config, now: u64) -> Option<(f64, f64)> {
        let (calls, failures, slow) = self.window(c, now);
        let min = if self.state == State::HalfOpen {
            c.half_open_calls
        } else {
            c.min_calls()
        };
        (calls > 0 && calls >= min).then(|| {
            (
                f64::from(failures) * 100.0 / f64::from(calls),
                f64::from(slow) * 100.0 / f64::from(calls),
            )
        })
    }

    fn go(&mut self, to: State, now: u64) -> State {
        let from = self.state;
        *self = Model {
            state: to,
            epoch: self.epoch + 1,
            since: now,
            calls: vec![],
            issued: 0,
            not_permitted: 0,
        };
        from
    }

    fn tick(&mut self, c: &Config, now: u64) -> Option<State> {
        if self.state == State::HalfOpen
            && c.max_wait_in_half_open_ms > 0
            && now >= self.since + c.max_wait_in_half_open_ms
        {
            self.go(State::Open, now);
            return Some(State::Open);
        }
        if self.state == State::Open
            && c.automatic_transition
            && now >= self.since + c.wait_in_open_ms
        {
            self.go(State::HalfOpen, now);
            return Some(State::HalfOpen);
        }
        None
    }

    fn acquire(&mut self, c: &Config, now: u64) -> (Option<u64>, Option<State>) {
        let mut t = self.tick(c, now);
        if self.state == State::Open && now >= self.since + c.wait_in_open_ms {
            self.go(State::HalfOpen, now);
            t = Some(State::HalfOpen);
        }
        let ok = match self.state {
            State::Closed | State::Disabled | State::MetricsOnly => true,
            State::HalfOpen if self.issued < c.half_open_calls => {
                self.issued += 1;
                true
            }
            _ => false,
        };
        if !ok {
            self.not_permitted += 1;
        }
        (ok.then_some(self.epoch), t)
    }

    fn record(
        &mut self,
        c: &Config,
        epoch: u64,
        outcome: Outcome,
        ms: u64,
        now: u64,
    ) -> (bool, Option<State>) {
        let t = self.tick(c, now);
        if epoch != self.epoch {
            return (false, t);
        }
        if outcome == Outcome::Ignored {
            if self.state == State::HalfOpen {
                self.issued = self.issued.saturating_sub(1);
            }
            return (false, t);
        }
        if !matches!(
            self.state,
            State::Closed | State::MetricsOnly | State::HalfOpen
        ) {
            return (false, None);
        }
        self.calls.push((
            now,
            outcome == Outcome::Failure,
            ms > c.slow_call_duration_ms,
        ));
        let over = self
            .rates(c, now)
            .map(|(f, s)| f >= c.failure_rate_threshold || s >= c.slow_call_rate_threshold);
        match (self.state, over) {
            (State::Closed, Some(true)) => {
                self.go(State::Open, now);
                (true, Some(State::Open))
            }
            (State::HalfOpen, Some(true)) => {
                self.go(State::Open, now);
                (true, Some(State::Open))
            }
            (State::HalfOpen, Some(false)) => {
                self.go(State::Closed, now);
                (true, Some(State::Closed))
            }
            _ => (true, None),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Reports the outcome of the `n`-th permit held (modulo the number held).
    Record(usize, Outcome, u64),
    Advance(u64),
    Tick,
    Set(State),
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![Just(WindowType::CountBased), Just(WindowType::TimeBased)],
        1u32..8,
        1u32..8,
        prop_oneof![Just(50.0), Just(100.0), 1.0f64..100.0],
        prop_oneof![Just(100.0), 1.0f64..100.0],
        1u64..400,
        1u64..3000,
        1u32..5,
        prop_oneof![Just(0u64), 1u64..3000],
        any::<bool>(),
    )
        .prop_map(
            |(window_type, size, min, fr, sr, slow, wait, half, max_half, auto)| Config {
                window_type,
                window_size: size,
                minimum_calls: min,
                failure_rate_threshold: fr,
                slow_call_rate_threshold: sr,
                slow_call_duration_ms: slow,
                wait_in_open_ms: wait,
                half_open_calls: half,
                max_wait_in_half_open_ms: max_half,
                automatic_transition: auto,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Failure),
        4 => Just(Outcome::Success),
        1 => Just(Outcome::Ignored)
    ];
    prop_oneof![
        6 => Just(Op::Acquire),
        6 => (any::<usize>(), outcome, 0u64..500).prop_map(|(n, o, ms)| Op::Record(n, o, ms)),
        3 => (0u64..1500).prop_map(Op::Advance),
        1 => Just(Op::Tick),
        1 => prop_oneof![
            Just(State::Closed),
            Just(State::ForcedOpen),
            Just(State::Disabled),
            Just(State::MetricsOnly)
        ]
        .prop_map(Op::Set),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_machine_agrees_with_the_reference_model(
        c in config(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut m = Machine::new(State::Closed, 0, 0);
        let mut r = Model { state: State::Closed, epoch: 0, since: 0, calls: vec![], issued: 0, not_permitted: 0 };
        let mut now = 0u64;
        let mut held: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => {
                    let (d, t) = m.acquire(&c, now);
                    let (rd, rt) = r.acquire(&c, now);
                    prop_assert_eq!(t.map(|t| t.to), rt);
                    match (d, rd) {
                        (Decision::Permitted { epoch }, Some(re)) => {
                            prop_assert_eq!(epoch, re);
                            held.push(epoch);
                        }
                        (Decision::Refused { retry_after_ms }, None) => prop_assert!(retry_after_ms >= 1),
                        other => prop_assert!(false, "decisions differ: {:?}", other),
                    }
                }
                Op::Record(n, outcome, ms) if !held.is_empty() => {
                    let epoch = held.remove(n % held.len());
                    let (counted, t) = m.record(&c, epoch, outcome, ms, now);
                    let (rc, rt) = r.record(&c, epoch, outcome, ms, now);
                    prop_assert_eq!(counted, rc);
                    prop_assert_eq!(t.map(|t| t.to), rt);
                }
                Op::Record(..) => {}
                Op::Advance(ms) => now += ms,
                Op::Tick => {
                    let t = m.tick(&c, now);
                    prop_assert_eq!(t.map(|t| t.to), r.tick(&c, now));
                }
                Op::Set(to) => {
                    m.set(to, now);
                    r.go(to, now);
                }
            }
            prop_assert_eq!(m.state, r.state);
            prop_assert_eq!(m.epoch, r.epoch);
            prop_assert_eq!(m.since_ms, r.since);
            let metrics = m.metrics(&c, now);
            let (calls, failures, slow) = r.window(&c, now);
            prop_assert_eq!((metrics.counts.calls, metrics.counts.failures, metrics.counts.slow), (calls, failures, slow));
            prop_assert_eq!(metrics.not_permitted, r.not_permitted);
            prop_assert_eq!(metrics.failure_rate, r.rates(&c, now).map(|x| x.0));
        }
    }
}
