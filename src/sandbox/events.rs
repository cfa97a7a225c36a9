//! Events of sandbox runs, written into the outbox with each change and relayed after commit;
//! subjects `sandbox.<runId>.<kind>`. Output events carry their chunk, so a subscriber on any
//! replica follows a run without reading the database; a gap (a lost event) is filled from the
//! stored chunks by offset.

use entity::{sandbox_output::OutputStream, sandbox_run::SandboxStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What happened to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxEventKind {
    /// Queued: replicas with room look for work.
    Queued,
    /// A replica claimed it and started its container.
    Started,
    /// The program wrote (the event's chunk).
    Output,
    /// A cancellation was asked for a running run: its replica kills the container.
    CancelRequested,
    /// It reached a final status.
    Finished,
}

impl SandboxEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Started => "started",
            Self::Output => "output",
            Self::CancelRequested => "cancel_requested",
            Self::Finished => "finished",
        }
    }
}

/// A stored chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub offset: i64,
    pub stream: OutputStream,
    /// The bytes, base64 in the event's JSON.
    #[serde(with = "bytes_b64")]
    pub data: Vec<u8>,
}

impl Chunk {
    /// The offset just past its last byte.
    pub fn end(&self) -> i64 {
        self.offset + i64::try_from(self.data.len()).unwrap_or(i64::MAX)
    }
}

/// One change of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxEvent {
    pub kind: SandboxEventKind,
    pub run_id: Uuid,
    pub tenant_id: Option<String>,
    pub status: SandboxStatus,
    /// Bytes stored once this change committed.
    pub stored_bytes: i64,
    /// The replica that runs it (for `CancelRequested`: the one that must act).
    pub replica: Option<String>,
    pub chunk: Option<Chunk>,
}

mod bytes_b64 {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
