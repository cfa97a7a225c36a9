//! GraphQL surface of task outputs: `submitTaskOutput` and `taskOutputs`, thin resolvers
//! over `crate::llm` (validation) and `TaskService` (recording).

use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::task_output;
use serde_json::Value;

use super::graphql::{Escalation, Task};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    graphql::context::{caller, meta, parse_id, services},
    llm::{
        check::{Fix, Violation},
        graphql::{ErrorGql, FixGql},
    },
};

/// One output an agent submitted for a task, as validated.
pub struct TaskOutput(pub task_output::Model);

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, AppError> {
    serde_json::from_str(text)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("decoding a stored task output: {e}")))
}

#[Object]
impl TaskOutput {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn task_id(&self) -> ID {
        ID(self.0.task_id.to_string())
    }
    /// The LLM output kind it was validated as.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    async fn valid(&self) -> bool {
        self.0.valid
    }
    /// The value, normalised and repaired (null when the text held no JSON).
    async fn value(&self) -> Result<Option<Json<Value>>> {
        Ok(self
            .0
            .value
            .as_deref()
            .map(decode::<Value>)
            .transpose()?
            .map(Json))
    }
    /// What is still wrong (empty when valid).
    async fn errors(&self) -> Result<Vec<ErrorGql>> {
        let errors: Vec<Violation> = decode(&self.0.errors)?;
        Ok(errors.into_iter().map(Into::into).collect())
    }
    /// Every fix applied.
    async fn fixes(&self) -> Result<Vec<FixGql>> {
        let fixes: Vec<Fix> = decode(&self.0.fixes)?;
        Ok(fixes.into_iter().map(Into::into).collect())
    }
    /// The escalation an invalid output opened.
    async fn escalation_id(&self) -> Option<ID> {
        self.0.escalation_id.map(|id| ID(id.to_string()))
    }
    async fn submitted_by(&self) -> &str {
        &self.0.submitted_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct SubmitTaskOutputInput {
    pub task_id: ID,
    /// The LLM output kind (`SYNTHESIS`, `PATTERN`, `CONSENSUS` or a registered one).
    pub kind: String,
    /// The model's text, as it answered.
    pub text: String,
    /// Idempotency key: a retry with the same id answers the first result.
    pub request_id: String,
}

/// The answer to `submitTaskOutput`.
#[derive(SimpleObject)]
pub struct SubmitTaskOutputResult {
    /// `COMPLETED` (valid output) or `BLOCKED` (invalid).
    pub task: Task,
    pub output: TaskOutput,
    /// Opened when the output stayed invalid.
    pub escalation: Option<Escalation>,
}

#[derive(Default)]
pub struct TaskOutputQuery;

#[Object]
impl TaskOutputQuery {
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// A task's submitted outputs, newest first.
    async fn task_outputs(&self, ctx: &Context<'_>, task_id: ID) -> Result<Vec<TaskOutput>> {
        let id = parse_id("taskId", &task_id)?;
        let rows = services(ctx)?
            .tasks
            .outputs(caller(ctx).tenant(), id)
            .await?;
        Ok(rows.into_iter().map(TaskOutput).collect())
    }
}

#[derive(Default)]
pub struct TaskOutputMutation;

#[Object]
impl TaskOutputMutation {
    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// Submits an IN_PROGRESS task's model output: validated (and repaired where it can be)
    /// as `kind`; a valid output is stored and completes the task, an invalid one blocks it
    /// and opens an escalation with the errors. Idempotent by `requestId`.
    async fn submit_task_output(
        &self,
        ctx: &Context<'_>,
        input: SubmitTaskOutputInput,
    ) -> Result<SubmitTaskOutputResult> {
        let svc = services(ctx)?;
        let task_id = parse_id("taskId", &input.task_id)?;
        let validation = svc.llm.validate(&input.kind, &input.text).await?;
        let done = svc
            .tasks
            .submit_output(
                &meta(ctx),
                task_id,
                &input.text,
                validation,
                &input.request_id,
            )
            .await?;
        Ok(SubmitTaskOutputResult {
            task: Task(done.task),
            output: TaskOutput(done.output),
            escalation: done.escalation.map(Escalation),
        })
    }
}
