//! DataLoaders for the task domain's nested fields: every `assignee`, `currentTask`, `task`,
//! `escalations`, `gateResults` and `remediationPlan` edge in one response is fetched with
//! one batched query per kind.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use entity::{agent, escalation, task, task_gate_result};
use uuid::Uuid;

use super::{quality::gates::Plan, service::TaskService};
use crate::error::AppError;

/// Tasks by id.
pub struct TaskLoader(pub TaskService);
/// Agents by id.
pub struct AgentLoader(pub TaskService);
/// Escalations by task id.
pub struct EscalationsByTaskLoader(pub TaskService);
/// Gate results by task id.
pub struct GateResultsByTaskLoader(pub TaskService);
/// The active remediation plan by task id (absent: none).
pub struct ActivePlanLoader(pub TaskService);

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

impl Loader<Uuid> for GateResultsByTaskLoader {
    type Value = Vec<task_gate_result::Model>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self
            .0
            .gate_results_by_task_ids(keys)
            .await
            .map_err(Arc::new)?;
        let mut by_task: HashMap<Uuid, Vec<task_gate_result::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for r in rows {
            by_task.entry(r.task_id).or_default().push(r);
        }
        Ok(by_task)
    }
}

impl Loader<Uuid> for ActivePlanLoader {
    type Value = Plan;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let plans = self
            .0
            .active_plans_by_task_ids(keys)
            .await
            .map_err(Arc::new)?;
        Ok(plans.into_iter().map(|p| (p.plan.task_id, p)).collect())
    }
}
