//! DataLoaders for the task domain's nested fields: every `assignee`, `currentTask`, `task`
//! and `escalations` edge in one response is fetched with one batched query per kind.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use entity::{agent, escalation, task};
use uuid::Uuid;

use super::service::TaskService;
use crate::error::AppError;

/// Tasks by id.
pub struct TaskLoader(pub TaskService);
/// Agents by id.
pub struct AgentLoader(pub TaskService);
/// Escalations by task id.
pub struct EscalationsByTaskLoader(pub TaskService);

impl Loader<Uuid> for TaskLoader {
    type Value = task::Model;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self.0.tasks_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|t| (t.id, t)).collect())
    }
}

impl Loader<Uuid> for AgentLoader {
    type Value = agent::Model;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self.0.agents_by_ids(keys).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|a| (a.id, a)).collect())
    }
}

impl Loader<Uuid> for EscalationsByTaskLoader {
    type Value = Vec<escalation::Model>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self
            .0
            .escalations_by_task_ids(keys)
            .await
            .map_err(Arc::new)?;
        let mut by_task: HashMap<Uuid, Vec<escalation::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for e in rows {
            by_task.entry(e.task_id).or_default().push(e);
        }
        Ok(by_task)
    }
}
