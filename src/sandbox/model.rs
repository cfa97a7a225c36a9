//! Pure rules of sandbox runs: the limits a request may ask for, how a container's end maps
//! to a run status, and the signal an exit code names. No I/O.

use entity::sandbox_run::SandboxStatus;

use super::config::SandboxConfig;
use crate::error::{AppError, AppResult};

/// Limits a request asks for; each unset one takes the configured default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestedLimits {
    pub memory_mb: Option<i64>,
    pub cpus: Option<f64>,
    pub timeout_ms: Option<i64>,
    pub pids: Option<i64>,
    pub output_bytes: Option<i64>,
}

/// The limits a run runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub memory_mb: i32,
    pub cpus: f64,
    pub timeout_ms: i64,
    pub pids: i32,
    pub output_bytes: i64,
}

fn whole(field: &'static str, value: Option<i64>, default: u64, max: u64) -> AppResult<i64> {
    let Some(value) = value else {
        return Ok(i64::try_from(default).unwrap_or(i64::MAX));
    };
    if value < 1 {
        return Err(AppError::bad_field(
            field,
            format!("limits.{field} must be at least 1"),
        ));
    }
    if u64::try_from(value).unwrap_or(u64::MAX) > max {
        return Err(AppError::bad_field(
            field,
            format!(
                "limits.{field} may be at most {max} (this server's maximum); {value} was asked"
            ),
        ));
    }
    Ok(value)
}

/// Resolves the requested limits against the configured defaults and maxima. Over a maximum
/// is `BAD_USER_INPUT` naming the field, never silently clamped.
pub fn resolve_limits(asked: RequestedLimits, config: &SandboxConfig) -> AppResult<Limits> {
    let memory_mb = whole(
        "memoryMb",
        asked.memory_mb,
        config.default_memory_mb.into(),
        config.max_memory_mb.into(),
    )?;
    if memory_mb < 8 {
        return Err(AppError::bad_field(
            "memoryMb",
            "limits.memoryMb must be at least 8",
        ));
    }
    let cpus = match asked.cpus {
        None => config.default_cpus,
        Some(c) if !c.is_finite() || c < 0.01 => {
            return Err(AppError::bad_field(
                "cpus",
                "limits.cpus must be at least 0.01",
            ));
        }
        Some(c) if c > config.max_cpus => {
            return Err(AppError::bad_field(
                "cpus",
                format!(
                    "limits.cpus may be at most {} (this server's maximum); {c} was asked",
                    config.max_cpus
                ),
            ));
        }
        Some(c) => c,
    };
    let timeout_ms = whole(
        "timeoutMs",
        asked.timeout_ms,
        config.default_timeout_ms,
        config.max_timeout_ms,
    )?;
    let pids = whole(
        "pids",
        asked.pids,
        config.default_pids.into(),
        config.max_pids.into(),
    )?;
    let output_bytes = whole(
        "outputBytes",
        asked.output_bytes,
        config.default_output_bytes,
        config.max_output_bytes,
    )?;
    Ok(Limits {
        memory_mb: i32::try_from(memory_mb).unwrap_or(i32::MAX),
        cpus,
        timeout_ms,
        pids: i32::try_from(pids).unwrap_or(i32::MAX),
        output_bytes,
    })
}

/// How a started container ended, as the runner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The program exited (its exit code; 128+n after signal n).
    Exited { code: i64, oom_killed: bool },
    /// The wall-clock limit passed and the runner killed it.
    TimedOut,
    /// A cancellation killed it.
    Cancelled,
    /// Its replica shut down and killed it: recorded `LOST`, as if the replica had died.
    Interrupted,
}

/// The final status, exit code and signal of a run that ended so.
pub fn outcome(ending: Ending) -> (SandboxStatus, Option<i32>, Option<&'static str>) {
    match ending {
        Ending::TimedOut => (SandboxStatus::TimedOut, None, Some("SIGKILL")),
        Ending::Cancelled => (SandboxStatus::Cancelled, None, Some("SIGKILL")),
        Ending::Interrupted => (SandboxStatus::Lost, None, Some("SIGKILL")),
        Ending::Exited { code, oom_killed } => {
            let signal = (code > 128).then(|| signal_name(code - 128)).flatten();
            let code32 = i32::try_from(code).ok();
            let status = if oom_killed {
                SandboxStatus::OomKilled
            } else if code == 0 {
                SandboxStatus::Succeeded
            } else {
                SandboxStatus::Failed
            };
            (status, code32, signal)
        }
    }
}

/// The name of signal `n` on Linux (the ones a program's end is likely to show).
pub fn signal_name(n: i64) -> Option<&'static str> {
    Some(match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// How `take` bytes of a `len`-byte chunk fit under the cap: `(kept, truncated)`, given `kept_so_far`.
pub fn fit(kept_so_far: i64, cap: i64, len: usize) -> (usize, bool) {
    let room = usize::try_from((cap - kept_so_far).max(0)).unwrap_or(usize::MAX);
    if len <= room {
        (len, false)
    } else {
        (room, true)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sandbox: SandboxConfig,
    }

    fn config() -> SandboxConfig {
        Cli::try_parse_from(["aurum"])
            .expect("defaults parse")
            .sandbox
    }

    #[test]
    fn unset_limits_take_the_defaults() {
        let l = resolve_limits(RequestedLimits::default(), &config()).expect("defaults");
        assert_eq!(
            l,
            Limits {
                memory_mb: 128,
                cpus: 1.0,
                timeout_ms: 10_000,
                pids: 128,
                output_bytes: 1_048_576
            }
        );
    }

    #[test]
    fn limits_over_the_maxima_are_refused_naming_the_field() {
        let c = config();
        let cases = [
            (
                RequestedLimits {
                    memory_mb: Some(513),
                    ..Default::default()
                },
                "memoryMb",
            ),
            (
                RequestedLimits {
                    cpus: Some(2.5),
                    ..Default::default()
                },
                "cpus",
            ),
            (
                RequestedLimits {
                    cpus: Some(f64::NAN),
                    ..Default::default()
                },
                "cpus",
            ),
            (
                RequestedLimits {
                    timeout_ms: Some(60_001),
                    ..Default::default()
                },
                "timeoutMs",
            ),
            (
                RequestedLimits {
                    pids: Some(0),
                    ..Default::default()
                },
                "pids",
            ),
            (
                RequestedLimits {
                    output_bytes: Some(-1),
                    ..Default::default()
                },
                "outputBytes",
            ),
        ];
        for (asked, field) in cases {
            match resolve_limits(asked, &c) {
                Err(AppError::BadUserInput { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("{asked:?}: {other:?}"),
            }
        }
        let at_max = RequestedLimits {
            memory_mb: Some(512),
            cpus: Some(2.0),
            timeout_ms: Some(60_000),
            pids: Some(512),
            output_bytes: Some(8_388_608),
        };
        assert!(resolve_limits(at_max, &c).is_ok());
    }

    #[test]
    fn endings_map_to_statuses() {
        assert_eq!(
            outcome(Ending::Exited {
                code: 0,
                oom_killed: false
            }),
            (SandboxStatus::Succeeded, Some(0), None)
        );
        assert_eq!(
            outcome(Ending::Exited {
                code: 3,
                oom_killed: false
            }),
            (SandboxStatus::Failed, Some(3), None)
        );
        assert_eq!(
            outcome(Ending::Exited {
                code: 137,
                oom_killed: true
            }),
            (SandboxStatus::OomKilled, Some(137), Some("SIGKILL"))
        );
        assert_eq!(
            outcome(Ending::Exited {
                code: 139,
                oom_killed: false
            }),
            (SandboxStatus::Failed, Some(139), Some("SIGSEGV"))
        );
        assert_eq!(outcome(Ending::TimedOut).0, SandboxStatus::TimedOut);
        assert_eq!(outcome(Ending::Cancelled).0, SandboxStatus::Cancelled);
    }

    #[test]
    fn output_fits_under_the_cap() {
        assert_eq!(fit(0, 10, 4), (4, false));
        assert_eq!(fit(8, 10, 4), (2, true));
        assert_eq!(fit(10, 10, 4), (0, true));
        assert_eq!(fit(12, 10, 0), (0, false));
    }
}
