//! `sandbox_runs`: one execution of untrusted code in a container, from queued to final. The
//! row is the queue (replicas claim `QUEUED` rows), the lease of the replica running it, and
//! the run's outcome.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "sandbox_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<String>,
    pub task_id: Option<Uuid>,
    /// A configured language's name.
    pub language: String,
    pub code: String,
    pub stdin: Option<String>,
    pub memory_mb: i32,
    pub cpus: f64,
    pub timeout_ms: i64,
    pub pids: i32,
    pub output_bytes: i64,
    pub status: SandboxStatus,
    pub exit_code: Option<i32>,
    /// The signal that ended the program (`SIGKILL`), when one did.
    pub signal: Option<String>,
    /// Why a run failed without an exit code (no image, the engine refused), or was lost.
    pub error: Option<String>,
    /// The replica running it (while `RUNNING`) or that ran it.
    pub replica: Option<String>,
    /// The running replica's lease: past it, the run is `LOST`.
    pub lease_expires_at: Option<DateTimeUtc>,
    pub cancel_requested: bool,
    pub container_id: Option<String>,
    pub peak_memory_bytes: Option<i64>,
    /// Bytes the program wrote, counted past the cap too.
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Bytes stored as chunks: the offset the next chunk starts at.
    pub stored_bytes: i64,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

/// `sandbox_runs.status`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SandboxStatus {
    #[sea_orm(string_value = "QUEUED")]
    Queued,
    #[sea_orm(string_value = "RUNNING")]
    Running,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "TIMED_OUT")]
    TimedOut,
    #[sea_orm(string_value = "OOM_KILLED")]
    OomKilled,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    #[sea_orm(string_value = "LOST")]
    Lost,
}

impl SandboxStatus {
    /// A status no run leaves.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
