//! `AppError`: the one error type resolvers and services return, and its one mapping to what a
//! client sees (`extensions.code`, HTTP status). Internal causes are logged here, once, with
//! the request id, and replaced by a generic message; nothing else decides an error's code.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;
use sea_orm::{DbErr, SqlErr};

/// Every error a client can receive from Aurum.
///
/// Deliberately not `Display`: async-graphql converts any `Display` error into a client
/// message without a code, so `?` on an `AppError` goes through the `From` impl below instead.
#[derive(Debug)]
pub enum AppError {
    /// The input is malformed or breaks a rule; nothing was changed.
    BadUserInput {
        message: String,
        field: Option<&'static str>,
    },
    /// The addressed object does not exist (or is not visible to the caller).
    NotFound { entity: &'static str, id: String },
    /// The request conflicts with the current state (a duplicate name, a resolved escalation).
    Conflict(String),
    /// No valid credentials were presented.
    Unauthenticated,
    /// The caller is known but lacks the permission.
    Forbidden,
    /// Too many requests; retry after the given number of seconds.
    RateLimited { retry_after_secs: u64 },
    /// A dependency the operation needs is down or disabled.
    ServiceUnavailable { dependency: &'static str },
    /// A subscriber fell too far behind the event stream and was dropped.
    SubscriptionLagged { skipped: u64 },
    /// A reservation would take the budget above its total; `available` is what is left.
    BudgetExceeded { requested: i64, available: i64 },
    /// The reservation was already committed; nothing changed.
    AlreadyCommitted,
    /// The reservation was already released; nothing changed.
    AlreadyReleased,
    /// The reservation passed its TTL and was (or is being) released by expiry.
    ReservationExpired,
    /// The request id was used before by this caller with a different input.
    IdempotencyKeyReused,
    /// The request id is being processed by another call right now; retry shortly.
    IdempotencyInProgress,
    /// A database failure; the cause is logged, never shown.
    Database(DbErr),
    /// Any other unexpected failure; the cause is logged, never shown.
    Internal(anyhow::Error),
}

/// Short-hand for results that fail with `AppError`.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field: Some(field),
        }
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// The message a client sees; internal causes are replaced by a generic text.
    pub fn message(&self) -> String {
        match self {
            Self::BadUserInput { message, .. } => message.clone(),
            Self::NotFound { entity, id } => format!("{entity} {id} not found"),
            Self::Conflict(message) => message.clone(),
            Self::Unauthenticated => "authentication required".into(),
            Self::Forbidden => "not allowed".into(),
            Self::RateLimited { retry_after_secs } => {
                format!("rate limit exceeded; retry after {retry_after_secs} s")
            }
            Self::ServiceUnavailable { dependency } => format!("{dependency} is unavailable"),
            Self::SubscriptionLagged { skipped } => {
                format!("subscription fell behind by {skipped} events and was closed; resubscribe")
            }
            Self::BudgetExceeded {
                requested,
                available,
            } => format!("budget exceeded: {requested} requested, {available} available"),
            Self::AlreadyCommitted => "the reservation is already committed".into(),
            Self::AlreadyReleased => "the reservation is already released".into(),
            Self::ReservationExpired => "the reservation expired and was released".into(),
            Self::IdempotencyKeyReused => {
                "this requestId was already used with a different input".into()
            }
            Self::IdempotencyInProgress => {
                "a call with this requestId is still in progress; retry shortly".into()
            }
            Self::Database(_) | Self::Internal(_) => "internal error".into(),
        }
    }

    /// The stable code clients match on (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::ServiceUnavailable { .. } => "SERVICE_UNAVAILABLE",
            Self::SubscriptionLagged { .. } => "SUBSCRIPTION_LAGGED",
            Self::BudgetExceeded { .. } => "BUDGET_EXCEEDED",
            Self::AlreadyCommitted => "ALREADY_COMMITTED",
            Self::AlreadyReleased => "ALREADY_RELEASED",
            Self::ReservationExpired => "RESERVATION_EXPIRED",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::Database(_) | Self::Internal(_) => INTERNAL_CODE,
        }
    }

    /// The HTTP status for the same error when it ends a plain HTTP request.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadUserInput { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::SubscriptionLagged { .. } => StatusCode::GONE,
            Self::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::AlreadyCommitted | Self::AlreadyReleased | Self::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            Self::ReservationExpired => StatusCode::GONE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `true` for errors whose message is replaced by a generic one before reaching a client.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Internal(_))
    }
}

/// `extensions.code` of masked internal errors.
pub const INTERNAL_CODE: &str = "INTERNAL_SERVER_ERROR";

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        // A unique-key violation is the client's conflict, not our failure.
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return Self::Conflict("an object with the same unique key already exists".into());
        }
        Self::Database(err)
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if self.is_internal() {
            // Logged here, once; the request id is attached by the GraphQL error extension,
            // which also logs the masked error's id alongside.
            tracing::error!(error.code = INTERNAL_CODE, error.cause = ?self, "internal error");
        }
        async_graphql::Error::new(self.message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::BadUserInput {
                    field: Some(field), ..
                } => ext.set("field", *field),
                Self::RateLimited { retry_after_secs } => ext.set("retryAfter", *retry_after_secs),
                Self::SubscriptionLagged { skipped } => ext.set("skipped", *skipped),
                Self::BudgetExceeded {
                    requested,
                    available,
                } => {
                    ext.set("requested", *requested);
                    ext.set("available", *available);
                }
                _ => {}
            }
        })
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.extend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant; the exhaustive match in `code()` keeps this list honest.
    fn every_variant() -> Vec<AppError> {
        vec![
            AppError::bad_field("title", "too long"),
            AppError::not_found("Task", "x"),
            AppError::Conflict("dup".into()),
            AppError::Unauthenticated,
            AppError::Forbidden,
            AppError::RateLimited {
                retry_after_secs: 3,
            },
            AppError::ServiceUnavailable {
                dependency: "redis",
            },
            AppError::SubscriptionLagged { skipped: 7 },
            AppError::BudgetExceeded {
                requested: 10,
                available: 3,
            },
            AppError::AlreadyCommitted,
            AppError::AlreadyReleased,
            AppError::ReservationExpired,
            AppError::IdempotencyKeyReused,
            AppError::IdempotencyInProgress,
            AppError::Database(DbErr::Custom("secret table detail".into())),
            AppError::Internal(anyhow::anyhow!("secret internal detail")),
        ]
    }

    #[test]
    fn every_variant_has_a_code_and_internals_are_masked() {
        let mut codes = std::collections::BTreeSet::new();
        for err in every_variant() {
            let code = err.code();
            let gql = err.extend();
            let ext = gql.extensions.as_ref().map(|e| e.get("code").cloned());
            assert_eq!(
                ext,
                Some(Some(async_graphql::Value::from(code))),
                "{err:?} lacks its code"
            );
            assert!(
                !gql.message.contains("secret"),
                "{err:?} leaks: {}",
                gql.message
            );
            codes.insert(code);
        }
        assert_eq!(codes.len(), 15, "codes: {codes:?}");
    }

    #[test]
    fn budget_exceeded_carries_the_available_amount() {
        let gql = AppError::BudgetExceeded {
            requested: 10,
            available: 3,
        }
        .extend();
        let ext = gql.extensions.as_ref();
        assert_eq!(
            ext.and_then(|e| e.get("available")),
            Some(&async_graphql::Value::from(3))
        );
        assert_eq!(
            ext.and_then(|e| e.get("requested")),
            Some(&async_graphql::Value::from(10))
        );
    }

    #[test]
    fn other_database_errors_are_internal() {
        let err = AppError::from(DbErr::RecordNotInserted);
        assert_eq!(err.code(), INTERNAL_CODE);
    }
}
