//! The configured work queues (`AURUM_QUEUES`) and their delivery rules: how many deliveries
//! a message gets, how long a delivery lasts, how long a failed one waits before the next.
//! Pure data and rules; both queue stores (JetStream, database) apply them.

use std::{str::FromStr, time::Duration};

use serde::Deserialize;

/// Deliveries a message gets before it is dead-lettered, unless the queue says otherwise.
pub const DEFAULT_MAX_DELIVER: u32 = 5;
/// Seconds a delivery lasts before the message comes back, unless acknowledged or extended.
pub const DEFAULT_ACK_WAIT_SECONDS: u64 = 30;
/// Seconds a nacked message waits before its next delivery, by attempt (the last repeats).
pub const DEFAULT_BACKOFF_SECONDS: [u64; 4] = [1, 5, 30, 120];
/// Longest queue name; names are `[a-z0-9_-]` so they fit a NATS subject token.
pub const NAME_MAX: usize = 64;

/// One queue's rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSpec {
    pub name: String,
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    #[serde(default = "default_ack_wait", rename = "ackWaitSeconds")]
    pub ack_wait_seconds: u64,
    #[serde(default = "default_backoff", rename = "backoffSeconds")]
    pub backoff_seconds: Vec<u64>,
}

fn default_max_deliver() -> u32 {
    DEFAULT_MAX_DELIVER
}
fn default_ack_wait() -> u64 {
    DEFAULT_ACK_WAIT_SECONDS
}
fn default_backoff() -> Vec<u64> {
    DEFAULT_BACKOFF_SECONDS.to_vec()
}

impl QueueSpec {
    /// A queue with the default rules.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            max_deliver: DEFAULT_MAX_DELIVER,
            ack_wait_seconds: DEFAULT_ACK_WAIT_SECONDS,
            backoff_seconds: default_backoff(),
        }
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_seconds)
    }

    /// How long a message nacked on delivery `attempt` (1-based) waits: the backoff entry of
    /// that attempt, the last entry repeating; no backoff = at once.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        let seconds = self
            .backoff_seconds
            .get(index)
            .or(self.backoff_seconds.last())
            .copied()
            .unwrap_or(0);
        Duration::from_secs(seconds)
    }

    /// `true` when delivery `attempt` was the last one allowed.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_deliver
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= NAME_MAX
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !name_ok {
            return Err(format!(
                "queue name {:?}: 1-{NAME_MAX} characters from [a-z0-9_-]",
                self.name
            ));
        }
        if !(1..=100).contains(&self.max_deliver) {
            return Err(format!("queue {}: maxDeliver must be 1-100", self.name));
        }
        if !(1..=43_200).contains(&self.ack_wait_seconds) {
            return Err(format!(
                "queue {}: ackWaitSeconds must be 1-43200",
                self.name
            ));
        }
        if self.backoff_seconds.len() > 100 || self.backoff_seconds.iter().any(|s| *s > 86_400) {
            return Err(format!(
                "queue {}: backoffSeconds holds at most 100 entries of at most 86400",
                self.name
            ));
        }
        Ok(())
    }
}

/// Every configured queue (`AURUM_QUEUES`): comma-separated names with the default rules, or
/// a JSON array of `{name, maxDeliver?, ackWaitSeconds?, backoffSeconds?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSet(Vec<QueueSpec>);

impl QueueSet {
    pub const DEFAULT: &'static str = "default";

    pub fn get(&self, name: &str) -> Option<&QueueSpec> {
        self.0.iter().find(|q| q.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &QueueSpec> {
        self.0.iter()
    }

    /// The names, for error messages.
    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(|q| q.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for QueueSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let specs: Vec<QueueSpec> = if s.starts_with('[') {
            serde_json::from_str(s).map_err(|e| format!("not a JSON array of queues: {e}"))?
        } else {
            s.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(QueueSpec::named)
                .collect()
        };
        if specs.is_empty() {
            return Err("name at least one queue".into());
        }
        for (i, spec) in specs.iter().enumerate() {
            spec.check()?;
            if specs[..i].iter().any(|q| q.name == spec.name) {
                return Err(format!("queue {} is named twice", spec.name));
            }
        }
        Ok(Self(specs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_json_parse_with_defaults() {
        let set: QueueSet = "default, llm".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.names(), "default, llm");
        assert_eq!(set.get("llm"), Some(&QueueSpec::named("llm")));
        let set: QueueSet = r#"[{"name":"llm","maxDeliver":3,"backoffSeconds":[2]}]"#
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let llm = set
            .get("llm")
            .cloned()
            .unwrap_or_else(|| QueueSpec::named("x"));
        assert_eq!(llm.max_deliver, 3);
        assert_eq!(llm.ack_wait_seconds, DEFAULT_ACK_WAIT_SECONDS);
        assert_eq!(llm.backoff(1), Duration::from_secs(2));
        assert_eq!(llm.backoff(9), Duration::from_secs(2));
        assert!(llm.exhausted(3) && !llm.exhausted(2));
    }

    #[test]
    fn bad_sets_are_refused_with_the_reason() {
        for (bad, says) in [
            ("", "at least one"),
            ("Default", "[a-z0-9_-]"),
            ("a,a", "twice"),
            (r#"[{"name":"a","maxDeliver":0}]"#, "maxDeliver"),
            (r#"[{"name":"a","speed":1}]"#, "unknown field"),
        ] {
            let err = bad.parse::<QueueSet>().err().unwrap_or_default();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn backoff_follows_the_attempt() {
        let q = QueueSpec::named("q");
        assert_eq!(q.backoff(1), Duration::from_secs(1));
        assert_eq!(q.backoff(2), Duration::from_secs(5));
        assert_eq!(q.backoff(4), Duration::from_secs(120));
        assert_eq!(q.backoff(7), Duration::from_secs(120));
    }
}
