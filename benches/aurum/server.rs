//! The server under test: one `aurum` process on a fresh SQLite, its RSS, and percentiles.

use std::{process::Child, time::Duration};

use crate::common::{self, login, spawn_server};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// An admin access token (subscriptions and mutations need one).
    pub(crate) token: String,
    /// RSS right after start, before any request.
    pub(crate) idle_rss_kib: u64,
    pub(crate) _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra environment settings (applied after the benchmark's own).
    pub(crate) fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_from(None, extra)
    }

    /// Starts `binary` (another build of aurum), or this build's.
    pub(crate) fn start_from(binary: Option<&std::path::Path>, extra: &[(&str, &str)]) -> Self {
        let mut server = Self::start_idle_from(binary, extra);
        // Called from inside the benchmark's runtime: log in from a thread of its own.
        let for_login = server.addr.clone();
        server.token = std::thread::spawn(move || login_blocking(&for_login))
            .join()
            .unwrap();
        server
    }

    /// Starts without logging in: no request has reached it yet (`token` is empty).
    pub(crate) fn start_idle(extra: &[(&str, &str)]) -> Self {
        Self::start_idle_from(None, extra)
    }

    pub(crate) fn start_idle_from(
        binary: Option<&std::path::Path>,
        extra: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = vec![
            ("AURUM_EVENT_BUFFER", "4096"),
            // (b) holds 10,000 sockets from one address and user (issue #21), and the sockets
            // of the run before may still be closing when the next run opens its own.
            ("AURUM_WS_MAX_PER_ADDRESS", "25000"),
            ("AURUM_WS_MAX_PER_USER", "25000"),
        ];
        settings.extend_from_slice(extra);
        let (child, addr) = match binary {
            Some(binary) => common::spawn_binary(binary, &settings, Some(dir.path())),
            None => spawn_server(&settings, Some(dir.path())),
        };
        let mut server = Self {
            child,
            addr,
            token: String::new(),
            idle_rss_kib: 0,
            _dir: dir,
        };
        std::thread::sleep(Duration::from_millis(500));
        server.idle_rss_kib = server.rss_kib();
        server
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The largest RSS the process has had (`VmHWM`).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    pub(crate) fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

/// Logs in from outside any runtime (the caller may be inside the benchmark's own).
pub(crate) fn login_blocking(addr: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(login(addr))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
