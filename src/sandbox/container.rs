//! A sandbox container as the engine sees it: the labels, the launcher that feeds the code in
//! through stdin, the create body with every isolation setting, and Docker calls under the
//! `docker` circuit breaker.

use std::collections::HashMap;

use bollard::{
    errors::Error as DockerError,
    models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits},
};
use entity::sandbox_run;

use super::config::SandboxConfig;
use crate::infra::guard::{Guard, Refused, guarded};

/// Labels every sandbox container carries.
pub const LABEL_MANAGED: &str = "io.aurum.sandbox";
pub const LABEL_RUN: &str = "io.aurum.run";
pub const LABEL_REPLICA: &str = "io.aurum.replica";
/// The deployment (`AURUM_SANDBOX_FLEET`): the sweeper's scope.
pub const LABEL_FLEET: &str = "io.aurum.fleet";

/// Reads exactly the code's length from stdin into `/tmp/<file>`, then runs the language's
/// command with the rest of stdin as its own. `dd … iflag=fullblock` reads no byte past the
/// code (a buffered reader could swallow the program's stdin).
pub const LAUNCHER: &str = "n=$1; f=/tmp/$2; shift 2; \
    dd of=\"$f\" bs=\"$n\" count=1 iflag=fullblock 2>/dev/null || exit 125; exec \"$@\"";

/// Why a Docker call did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Engine(#[from] DockerError),
}

impl CallError {
    /// The engine answered "no such container" (gone already).
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            Self::Engine(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            })
        )
    }
}

/// An answer from the engine (even an error status) tells the breaker the engine is up.
pub fn answered(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { .. })
}

/// Runs one Docker call under the breaker.
pub async fn call<T>(
    guard: &Guard,
    fut: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, CallError> {
    let outcome = guarded(Some(guard), async {
        match fut.await {
            Ok(v) => Ok(Ok(v)),
            Err(e) if answered(&e) => Ok(Err(e)),
            Err(e) => Err(e),
        }
    })
    .await?;
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) | Err(e) => Err(CallError::Engine(e)),
    }
}

/// The container of `run` on `replica`: every isolation setting of DESIGN.md §3 "Sandbox
/// runs" in one place. `Err` when the run's language is no longer configured.
pub fn spec(
    config: &SandboxConfig,
    run: &sandbox_run::Model,
    replica: &str,
) -> Result<ContainerCreateBody, &'static str> {
    let lang = config
        .languages
        .get(&run.language)
        .ok_or("its language is no longer configured")?;
    let mut cmd = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        LAUNCHER.to_owned(),
        "aurum-launcher".to_owned(),
        run.code.len().to_string(),
        lang.file.clone(),
    ];
    cmd.extend(lang.command.iter().cloned());
    let mib = |mb: i64| mb.saturating_mul(1024 * 1024);
    let tmp = i64::from(config.tmp_mb);
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_RUN.to_owned(), run.id.to_string()),
        (LABEL_REPLICA.to_owned(), replica.to_owned()),
        (LABEL_FLEET.to_owned(), config.fleet.clone()),
    ]);
    let ulimit = |name: &str, value: i64| ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(value),
        hard: Some(value),
    };
    Ok(ContainerCreateBody {
        image: Some(lang.image.clone()),
        cmd: Some(cmd),
        entrypoint: Some(Vec::new()),
        user: Some("65534:65534".to_owned()),
        working_dir: Some("/tmp".to_owned()),
        // Only the image's own variables (PATH): nothing from the host.
        env: Some(Vec::new()),
        labels: Some(labels),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,noexec,nosuid,nodev,size={}m,mode=1777", config.tmp_mb),
            )])),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            memory: Some(mib(run.memory_mb.into())),
            memory_swap: Some(mib(run.memory_mb.into())),
            nano_cpus: Some((run.cpus * 1e9) as i64),
            pids_limit: Some(run.pids.into()),
            ulimits: Some(vec![ulimit("nofile", 256), ulimit("fsize", mib(tmp))]),
            runtime: Some(config.runtime.clone()),
            // Output is read through the attach stream; nothing is logged on the host.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            privileged: Some(false),
            auto_remove: Some(false),
            init: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    })
}
