//! The permission guard every exposed field carries: `#[graphql(guard = "Require(Permission::TaskView)")]`.
//! Anonymous callers get `UNAUTHENTICATED`, others without the permission `FORBIDDEN`.

use async_graphql::{Context, ErrorExtensions, Guard};

use super::permission::Permission;
use crate::{error::AppError, graphql::context::caller};

/// Requires one permission.
pub struct Require(pub Permission);

impl Guard for Require {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let caller = caller(ctx);
        if caller.can(self.0) {
            Ok(())
        } else if matches!(caller, super::Caller::Anonymous) {
            Err(AppError::Unauthenticated.extend())
        } else {
            Err(AppError::Forbidden.extend())
        }
    }
}

/// Requires any authenticated caller.
pub struct Authenticated;

impl Guard for Authenticated {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if matches!(caller(ctx), super::Caller::Anonymous) {
            Err(AppError::Unauthenticated.extend())
        } else {
            Ok(())
        }
    }
}
