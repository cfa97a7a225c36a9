//! Relay's object identification: the `Node` interface and `node(id: ID!)`, so a client cache
//! can refetch any object by its id alone.
//!
//! Every row of every table gets a fresh UUID (v4 or v7), so an id names one object whatever
//! its type: ids are globally unique without a type prefix, and the ids clients already hold
//! stay valid. `node` looks the id up in each type the caller may view, in turn, with the same
//! permission and tenant scoping as that type's own query, and answers null when none holds it
//! (an object the caller may not see is indistinguishable from one that does not exist).

use async_graphql::{Context, ID, Interface, Object, Result};

use crate::{
    audit::graphql::AuditLogEntry,
    auth::{
        Caller,
        graphql::{ApiKey, User},
        guard::Authenticated,
        permission::Permission,
    },
    budget::graphql::{Budget, BudgetReservation, BudgetTransaction},
    dlq::graphql::{DlqMessage, DlqRedrive},
    error::{AppError, AppResult},
    graphql::context::{caller, parse_id, services},
    task::graphql::{Agent, Escalation, Task},
};

/// An object with a globally unique id, refetchable with `node(id:)`.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "Globally unique id of the object."))]
pub enum Node {
    Task(Task),
    Agent(Agent),
    Escalation(Escalation),
    Budget(Budget),
    BudgetReservation(BudgetReservation),
    BudgetTransaction(BudgetTransaction),
    User(User),
    ApiKey(ApiKey),
    AuditLogEntry(AuditLogEntry),
    DlqMessage(DlqMessage),
    DlqRedrive(DlqRedrive),
}

/// `NOT_FOUND` is "try the next type"; any other error ends the lookup.
fn found<T>(result: AppResult<T>) -> AppResult<Option<T>> {
    match result {
        Ok(row) => Ok(Some(row)),
        Err(AppError::NotFound { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by its id; null when it does not exist or the caller may not see it.
    #[graphql(guard = "Authenticated")]
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let id = parse_id("id", &id)?;
        let svc = services(ctx)?;
        let who: &Caller = caller(ctx);
        let scope = who.tenant();
        if who.can(Permission::TaskView)
            && let Some(row) = found(svc.tasks.task(scope, id).await)?
        {
            return Ok(Some(Node::Task(Task(row))));
        }
        if who.can(Permission::EscalationView)
            && let Some(row) = found(svc.tasks.escalation(scope, id).await)?
        {
            return Ok(Some(Node::Escalation(Escalation(row))));
        }
        if who.can(Permission::AgentView)
            && let Some(row) = found(svc.tasks.agent(scope, id).await)?
        {
            return Ok(Some(Node::Agent(Agent(row))));
        }
        if who.can(Permission::BudgetView) {
            if let Some(row) = found(svc.budgets.budget(scope, id).await)? {
                return Ok(Some(Node::Budget(Budget(row))));
            }
            if let Some(row) = found(svc.budgets.reservation(scope, id).await)? {
                return Ok(Some(Node::BudgetReservation(BudgetReservation(row))));
            }
            if let Some(row) = found(svc.budgets.transaction(scope, id).await)? {
                return Ok(Some(Node::BudgetTransaction(BudgetTransaction(row))));
            }
        }
        if who.can(Permission::AuditView)
            && let Some(row) = found(svc.audit.entry(scope, id).await)?
        {
            return Ok(Some(Node::AuditLogEntry(AuditLogEntry(row))));
        }
        if who.can(Permission::DlqRead) {
            if let Some(row) = found(svc.dlq.get(scope, id).await)? {
                return Ok(Some(Node::DlqMessage(DlqMessage(row))));
            }
            if let Some(row) = found(svc.dlq.redrive_job(scope, id).await)? {
                return Ok(Some(Node::DlqRedrive(DlqRedrive(row))));
            }
        }
        // Every user may refetch themselves (`me`); other users need `user.manage`.
        let own = matches!(who, Caller::User { id: me, .. } if *me == id);
        if own || who.can(Permission::UserManage) {
            if let Some(row) = found(svc.users.user(id).await)? {
                return Ok(Some(Node::User(User(row))));
            }
            if who.can(Permission::UserManage)
                && let Some(row) = found(svc.users.api_key(id).await)?
            {
                return Ok(Some(Node::ApiKey(ApiKey(row))));
            }
        }
        Ok(None)
    }
}
