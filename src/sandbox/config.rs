//! Sandbox settings (flattened into `Config`): the runtime, the pool size, the languages, the
//! default limits of a run and the maxima a request may ask for. No I/O here.

use std::{fmt, str::FromStr, time::Duration};

use clap::Args;

/// One language a run may be written in: the image it runs in, the file its code is written
/// to (under `/tmp`) and the command that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    pub name: String,
    pub image: String,
    /// File name under `/tmp`, e.g. `main.py`.
    pub file: String,
    /// Argument vector, e.g. `["python3", "/tmp/main.py"]`.
    pub command: Vec<String>,
}

/// The configured languages, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Languages(pub Vec<Language>);

impl Languages {
    pub fn get(&self, name: &str) -> Option<&Language> {
        self.0.iter().find(|l| l.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|l| l.name.as_str()).collect()
    }
}

/// The default: Python 3 and POSIX shell in the images `scripts/sandbox-images` builds.
pub const DEFAULT_LANGUAGES: &str = "python=aurum/sandbox-python:1|main.py|python3 -u /tmp/main.py;\
                                     shell=aurum/sandbox-shell:1|main.sh|sh /tmp/main.sh";

impl FromStr for Languages {
    type Err = String;

    /// `name=image|file|command;…` (the command is split on blanks).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out: Vec<Language> = Vec::new();
        for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}`: expected name=image|file|command"))?;
            let parts: Vec<&str> = rest.split('|').map(str::trim).collect();
            let [image, file, command] = parts[..] else {
                return Err(format!("`{entry}`: expected name=image|file|command"));
            };
            let name = name.trim();
            let valid_name = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(format!(
                    "`{name}`: a language name is 1-32 of [A-Za-z0-9_-]"
                ));
            }
            let valid_file = !file.is_empty()
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                && !file.starts_with('.');
            if !valid_file {
                return Err(format!(
                    "`{file}`: a file name is [A-Za-z0-9._-], not hidden"
                ));
            }
            let command: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            if image.is_empty() || command.is_empty() {
                return Err(format!("`{entry}`: image and command must not be empty"));
            }
            if out.iter().any(|l| l.name == name) {
                return Err(format!("`{name}`: named twice"));
            }
            out.push(Language {
                name: name.to_owned(),
                image: image.to_owned(),
                file: file.to_owned(),
                command,
            });
        }
        if out.is_empty() {
            return Err("at least one language".into());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Languages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|l| format!("{}={}|{}|{}", l.name, l.image, l.file, l.command.join(" ")))
            .collect();
        f.write_str(&entries.join(";"))
    }
}

/// Sandbox settings.
#[derive(Debug, Clone, Args)]
pub struct SandboxConfig {
    /// Container runtime of every run: `runc` (Docker's default) or `runsc` (gVisor, when
    /// registered with the engine).
    #[arg(
        long = "sandbox-runtime",
        env = "AURUM_SANDBOX_RUNTIME",
        default_value = "runc"
    )]
    pub runtime: String,

    /// Name of this deployment on the Docker engine: its containers carry it as a label, and
    /// its sweeper removes only containers with its name (other deployments, or test runs,
    /// sharing the engine are left alone). Every replica of one deployment uses the same.
    #[arg(
        long = "sandbox-fleet",
        env = "AURUM_SANDBOX_FLEET",
        default_value = "aurum"
    )]
    pub fleet: String,

    /// Runs one replica executes at once; more wait queued (any replica may take them). 0 =
    /// this replica runs none (it still queues, cancels and streams).
    #[arg(long = "sandbox-concurrency", env = "AURUM_SANDBOX_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub concurrency: u32,

    /// Languages: `name=image|file|command;…`; the code is written to `/tmp/<file>`.
    #[arg(long = "sandbox-languages", env = "AURUM_SANDBOX_LANGUAGES", default_value = DEFAULT_LANGUAGES)]
    pub languages: Languages,

    /// Memory (and memory+swap) of a run that names none, in MiB.
    #[arg(long = "sandbox-default-memory-mb", env = "AURUM_SANDBOX_DEFAULT_MEMORY_MB", default_value_t = 128, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub default_memory_mb: u32,
    /// Largest memory a run may ask for, in MiB.
    #[arg(long = "sandbox-max-memory-mb", env = "AURUM_SANDBOX_MAX_MEMORY_MB", default_value_t = 512, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub max_memory_mb: u32,
    /// CPUs of a run that names none.
    #[arg(
        long = "sandbox-default-cpus",
        env = "AURUM_SANDBOX_DEFAULT_CPUS",
        default_value_t = 1.0
    )]
    pub default_cpus: f64,
    /// Most CPUs a run may ask for.
    #[arg(
        long = "sandbox-max-cpus",
        env = "AURUM_SANDBOX_MAX_CPUS",
        default_value_t = 2.0
    )]
    pub max_cpus: f64,
    /// Wall-clock limit of a run that names none, in milliseconds.
    #[arg(long = "sandbox-default-timeout-ms", env = "AURUM_SANDBOX_DEFAULT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub default_timeout_ms: u64,
    /// Longest wall-clock limit a run may ask for, in milliseconds.
    #[arg(long = "sandbox-max-timeout-ms", env = "AURUM_SANDBOX_MAX_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub max_timeout_ms: u64,
    /// Process limit of a run that names none (under runsc leave room for gVisor's own
    /// threads: 32 fails, 128 works).
    #[arg(long = "sandbox-default-pids", env = "AURUM_SANDBOX_DEFAULT_PIDS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub default_pids: u32,
    /// Largest process limit a run may ask for.
    #[arg(long = "sandbox-max-pids", env = "AURUM_SANDBOX_MAX_PIDS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub max_pids: u32,
    /// Output kept of a run that names none (stdout and stderr together), in bytes; the rest
    /// is read and dropped, and the run says it was truncated.
    #[arg(long = "sandbox-default-output-bytes", env = "AURUM_SANDBOX_DEFAULT_OUTPUT_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub default_output_bytes: u64,
    /// Most output a run may ask to keep, in bytes.
    #[arg(long = "sandbox-max-output-bytes", env = "AURUM_SANDBOX_MAX_OUTPUT_BYTES", default_value_t = 8_388_608, value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub max_output_bytes: u64,
    /// Largest program accepted, in bytes (larger is refused before any container starts).
    #[arg(long = "sandbox-max-code-bytes", env = "AURUM_SANDBOX_MAX_CODE_BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub max_code_bytes: u64,
    /// Largest stdin accepted, in bytes.
    #[arg(long = "sandbox-max-stdin-bytes", env = "AURUM_SANDBOX_MAX_STDIN_BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    pub max_stdin_bytes: u64,
    /// Size of a run's `/tmp` (tmpfs, noexec), in MiB; files written there also stop at the
    /// `fsize` ulimit.
    #[arg(long = "sandbox-tmp-mb", env = "AURUM_SANDBOX_TMP_MB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub tmp_mb: u32,
    /// Seconds a replica's claim on a running run lasts without renewal (renewed every third
    /// of it); past it another replica marks the run `LOST` and removes its container.
    #[arg(long = "sandbox-lease-seconds", env = "AURUM_SANDBOX_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_seconds: u64,
    /// Milliseconds between a replica's looks for queued runs when no event woke it, expired
    /// leases and containers no run owns.
    #[arg(long = "sandbox-poll-ms", env = "AURUM_SANDBOX_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,
}

impl SandboxConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    /// Settings that contradict each other (a default above its maximum), named.
    pub fn check(&self) -> Result<(), String> {
        let pairs: [(&str, f64, f64); 5] = [
            (
                "MEMORY_MB",
                self.default_memory_mb.into(),
                self.max_memory_mb.into(),
            ),
            ("CPUS", self.default_cpus, self.max_cpus),
            (
                "TIMEOUT_MS",
                self.default_timeout_ms as f64,
                self.max_timeout_ms as f64,
            ),
            ("PIDS", self.default_pids.into(), self.max_pids.into()),
            (
                "OUTPUT_BYTES",
                self.default_output_bytes as f64,
                self.max_output_bytes as f64,
            ),
        ];
        for (name, default, max) in pairs {
            if default > max {
                return Err(format!(
                    "AURUM_SANDBOX_DEFAULT_{name} ({default}) is above AURUM_SANDBOX_MAX_{name} ({max})"
                ));
            }
        }
        if !(self.max_cpus.is_finite() && self.default_cpus > 0.0 && self.max_cpus <= 1024.0) {
            return Err("AURUM_SANDBOX_DEFAULT_CPUS / MAX_CPUS: above 0 and at most 1024".into());
        }
        if !matches!(self.runtime.as_str(), "runc" | "runsc") {
            return Err(format!(
                "AURUM_SANDBOX_RUNTIME: `{}` is not runc or runsc",
                self.runtime
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_languages_parse() {
        let langs: Languages = DEFAULT_LANGUAGES.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(langs.names(), ["python", "shell"]);
        let py = langs.get("python").map(|l| l.command.clone());
        assert_eq!(
            py,
            Some(vec!["python3".into(), "-u".into(), "/tmp/main.py".into()])
        );
        assert_eq!(langs.to_string().parse::<Languages>(), Ok(langs));
    }

    #[test]
    fn bad_languages_are_refused_naming_the_entry() {
        for bad in [
            "",
            "python",
            "py=img|main.py",
            "a b=img|f|cmd",
            "x=img|../f|cmd",
            "x=img|f|",
            "x=i|f|c;x=i|f|c",
        ] {
            assert!(bad.parse::<Languages>().is_err(), "{bad:?} was accepted");
        }
    }
}
