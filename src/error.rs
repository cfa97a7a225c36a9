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
    /// A subscriber fell too far behind the event stream and was dropped; it resumes with
    /// `after: lastCursor`.
    SubscriptionLagged {
        skipped: u64,
        last_cursor: Option<u64>,
    },
    /// A subscription's `after` cursor is older than the events kept (or unknown): the client
    /// refetches the state and subscribes again without it.
    CursorExpired { cursor: u64, oldest: u64 },
    /// An administrator closed the subscription.
    SubscriptionClosed,
    /// A reservation would take the budget above its total; `available` is what is left.
    BudgetExceeded { requested: i64, available: i64 },
    /// The reservation was already committed; nothing changed.
    AlreadyCommitted,
    /// The reservation was already released; nothing changed.
    AlreadyReleased,
    /// The reservation passed its TTL and was (or is being) released by expiry.
    ReservationExpired,
    /// The delivery's time ran out (or a later delivery of its message exists): the message
    /// is someone else's now; nothing changed.
    DeliveryExpired,
    /// The delivery was already acknowledged, nacked or rejected; nothing changed.
    DeliverySettled,
    /// The circuit breaker's permit already had its outcome recorded; nothing changed.
    PermitAlreadyRecorded,
    /// A circuit breaker refused the call (the dependency it guards is failing, or a person
    /// forced it open); retry after the given time.
    CircuitOpen {
        breaker: String,
        retry_after_ms: u64,
    },
    /// The agent role's prompt updates already fill the last 24 hours; the next may apply at
    /// `next_allowed_at` (`None`: the role's rule allows none).
    LearningDailyLimit {
        next_allowed_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The agent role's last prompt update applied too recently; the next may apply at
    /// `next_allowed_at`.
    LearningCooldown {
        next_allowed_at: chrono::DateTime<chrono::Utc>,
    },
    /// The change needs a second person: the proposer (or an API key) cannot approve it.
    FourEyesRequired(String),
    /// Quality gates refused a task's move to `target`: each failing gate with why. The
    /// refusal committed a remediation plan (`plan_created`) or left the active one
    /// (`plan_id`) in place, and sent the task back to work.
    GateFailed {
        target: String,
        gates: Vec<(String, String)>,
        plan_id: uuid::Uuid,
        plan_created: bool,
    },
    /// Sandbox runs cannot start here now (no Docker engine, an unregistered runtime, the
    /// language's image missing): why.
    SandboxUnavailable(String),
    /// The request id was used before by this caller with a different input.
    IdempotencyKeyReused,
    /// The request id is being processed by another call right now; retry shortly.
    IdempotencyInProgress,
    /// The HTTP request is not a GraphQL request (a body that is not one, a WebSocket upgrade
    /// without a GraphQL subprotocol); the message says what is wrong.
    BadRequest(String),
    /// The body's content type is not `application/json` (other types skip CORS preflight).
    UnsupportedMediaType,
    /// The request body is larger than the configured cap (bytes).
    PayloadTooLarge { limit: usize },
    /// A batched POST holds no operation, or more than the cap.
    BatchTooLarge { max: usize },
    /// A page from an origin that is not allowed tried to open a WebSocket.
    ForbiddenOrigin,
    /// The client's address holds as many WebSockets as it may.
    TooManyConnections,
    /// The document does not parse; the message is the parser's.
    GraphqlParseFailed(String),
    /// The document breaks a validation rule, or names an operation it does not hold.
    GraphqlValidationFailed(String),
    /// The document is over one of the configured limits.
    QueryLimit { limit: QueryLimit, message: String },
    /// A database failure; the cause is logged, never shown.
    Database(DbErr),
    /// Any other unexpected failure; the cause is logged, never shown.
    Internal(anyhow::Error),
}

/// Which document limit refused a request (each has its own code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLimit {
    /// Nested deeper than the depth limit (or async-graphql's recursion limit).
    Depth,
    /// More directives on one field than allowed.
    Directives,
    /// More complex than the complexity limit.
    Complexity,
    /// Expands to more fields than allowed (fragments counted where they are spread).
    Size,
    /// More aliases than allowed.
    Aliases,
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
            Self::SubscriptionLagged { skipped, .. } => format!(
                "subscription fell behind by {skipped} events and was closed; resubscribe with after: lastCursor"
            ),
            Self::CursorExpired { cursor, oldest } => format!(
                "cursor {cursor} is no longer held (the oldest resumable is {oldest}); refetch the state and subscribe without after"
            ),
            Self::SubscriptionClosed => "an administrator closed this subscription".into(),
            Self::BudgetExceeded {
                requested,
                available,
            } => format!("budget exceeded: {requested} requested, {available} available"),
            Self::AlreadyCommitted => "the reservation is already committed".into(),
            Self::AlreadyReleased => "the reservation is already released".into(),
            Self::ReservationExpired => "the reservation expired and was released".into(),
            Self::DeliveryExpired => {
                "the delivery expired; its message was (or will be) delivered again".into()
            }
            Self::DeliverySettled => {
                "the delivery was already acknowledged, nacked or rejected".into()
            }
            Self::PermitAlreadyRecorded => "this permit's outcome was already recorded".into(),
            Self::CircuitOpen {
                breaker,
                retry_after_ms,
            } => format!(
                "circuit breaker `{breaker}` is open; retry after {} s",
                retry_after_ms.div_ceil(1000).max(1)
            ),
            Self::LearningDailyLimit { next_allowed_at } => match next_allowed_at {
                Some(at) => format!(
                    "the role's daily limit of prompt updates is reached; the next may apply at {}",
                    at.to_rfc3339()
                ),
                None => "the role's rule allows no prompt updates".into(),
            },
            Self::LearningCooldown { next_allowed_at } => format!(
                "the role's cooldown after its last prompt update runs until {}",
                next_allowed_at.to_rfc3339()
            ),
            Self::FourEyesRequired(message) => message.clone(),
            Self::GateFailed { target, gates, .. } => format!(
                "quality gates refuse the move to {target}: {}; the task has a remediation plan",
                gates
                    .iter()
                    .map(|(gate, why)| format!("{gate} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::SandboxUnavailable(why) => format!("sandbox runs cannot start: {why}"),
            Self::IdempotencyKeyReused => {
                "this requestId was already used with a different input".into()
            }
            Self::IdempotencyInProgress => {
                "a call with this requestId is still in progress; retry shortly".into()
            }
            Self::BadRequest(message)
            | Self::GraphqlParseFailed(message)
            | Self::GraphqlValidationFailed(message)
            | Self::QueryLimit { message, .. } => message.clone(),
            Self::UnsupportedMediaType => "send operations as application/json".into(),
            Self::PayloadTooLarge { limit } => format!("request body exceeds {limit} bytes"),
            Self::BatchTooLarge { max } => format!("a batch holds 1 to {max} operations"),
            Self::ForbiddenOrigin => "this origin may not open WebSockets here".into(),
            Self::TooManyConnections => "too many WebSockets from this address".into(),
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
            Self::CursorExpired { .. } => "CURSOR_EXPIRED",
            Self::SubscriptionClosed => "SUBSCRIPTION_CLOSED",
            Self::BudgetExceeded { .. } => "BUDGET_EXCEEDED",
            Self::AlreadyCommitted => "ALREADY_COMMITTED",
            Self::AlreadyReleased => "ALREADY_RELEASED",
            Self::ReservationExpired => "RESERVATION_EXPIRED",
            Self::DeliveryExpired => "DELIVERY_EXPIRED",
            Self::DeliverySettled => "DELIVERY_SETTLED",
            Self::PermitAlreadyRecorded => "PERMIT_ALREADY_RECORDED",
            Self::CircuitOpen { .. } => "CIRCUIT_OPEN",
            Self::LearningDailyLimit { .. } => "LEARNING_DAILY_LIMIT",
            Self::LearningCooldown { .. } => "LEARNING_COOLDOWN",
            Self::FourEyesRequired(_) => "FOUR_EYES_REQUIRED",
            Self::GateFailed { .. } => "GATE_FAILED",
            Self::SandboxUnavailable(_) => "SANDBOX_UNAVAILABLE",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::BatchTooLarge { .. } => "BATCH_TOO_LARGE",
            Self::ForbiddenOrigin => "FORBIDDEN_ORIGIN",
            // The same code as the other rate limits: clients back off the same way.
            Self::TooManyConnections => "RATE_LIMITED",
            Self::GraphqlParseFailed(_) => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed(_) => "GRAPHQL_VALIDATION_FAILED",
            Self::QueryLimit { limit, .. } => match limit {
                QueryLimit::Depth => "QUERY_TOO_DEEP",
                QueryLimit::Directives => "TOO_MANY_DIRECTIVES",
                QueryLimit::Complexity => "QUERY_TOO_COMPLEX",
                QueryLimit::Size => "QUERY_TOO_LARGE",
                QueryLimit::Aliases => "TOO_MANY_ALIASES",
            },
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
            Self::SubscriptionLagged { .. } | Self::CursorExpired { .. } => StatusCode::GONE,
            Self::SubscriptionClosed => StatusCode::GONE,
            Self::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::AlreadyCommitted | Self::AlreadyReleased | Self::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            Self::ReservationExpired | Self::DeliveryExpired => StatusCode::GONE,
            Self::DeliverySettled | Self::PermitAlreadyRecorded => StatusCode::CONFLICT,
            Self::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::LearningDailyLimit { .. } | Self::LearningCooldown { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::FourEyesRequired(_) => StatusCode::FORBIDDEN,
            Self::GateFailed { .. } => StatusCode::CONFLICT,
            Self::SandboxUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_)
            | Self::BatchTooLarge { .. }
            | Self::GraphqlParseFailed(_)
            | Self::GraphqlValidationFailed(_)
            | Self::QueryLimit { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Self::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
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

impl From<crate::infra::guard::Refused> for AppError {
    fn from(r: crate::infra::guard::Refused) -> Self {
        Self::CircuitOpen {
            breaker: r.breaker.to_owned(),
            retry_after_ms: u64::try_from(r.retry_after.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl AppError {
    /// The answer to an HTTP request refused before any operation ran: this error's status, a
    /// GraphQL-shaped body with its code, extensions and the request id, and `Retry-After` for
    /// rate limits. Every transport-level refusal (body, content type, batch, edge limit,
    /// origin, WebSocket caps) goes out through here.
    pub fn http_response(&self, request_id: &str) -> axum::response::Response {
        use axum::{
            http::{HeaderValue, header},
            response::IntoResponse,
        };
        let mut gql = self.extend();
        gql.extensions
            .get_or_insert_with(Default::default)
            .set("requestId", request_id);
        let error = gql.into_server_error(async_graphql::Pos::default());
        let body = serde_json::json!({ "errors": [error] });
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Self::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }

    /// The error as a GraphQL error at no particular position (one that refuses a whole
    /// request rather than a field).
    pub fn into_server_error(self) -> async_graphql::ServerError {
        self.extend()
            .into_server_error(async_graphql::Pos::default())
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if self.is_internal() {
            // Logged here, once. Every request and WebSocket operation runs inside a tracing
            // span holding its request id, caller and operation (`telemetry`), so this line
            // carries the `extensions.requestId` the client receives.
            tracing::error!(error.code = INTERNAL_CODE, error.cause = ?self, "internal error");
        }
        async_graphql::Error::new(self.message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::BadUserInput {
                    field: Some(field), ..
                } => ext.set("field", *field),
                Self::RateLimited { retry_after_secs } => ext.set("retryAfter", *retry_after_secs),
                Self::CircuitOpen {
                    breaker,
                    retry_after_ms,
                } => {
                    ext.set("breaker", breaker.as_str());
                    ext.set("retryAfter", retry_after_ms.div_ceil(1000).max(1));
                    ext.set("retryAfterMs", *retry_after_ms);
                }
                Self::SubscriptionLagged {
                    skipped,
                    last_cursor,
                } => {
                    ext.set("skipped", *skipped);
                    if let Some(last) = last_cursor {
                        ext.set("lastCursor", last.to_string());
                    }
                }
                Self::CursorExpired { oldest, .. } => ext.set("oldestCursor", oldest.to_string()),
                Self::LearningDailyLimit {
                    next_allowed_at: Some(at),
                }
                | Self::LearningCooldown {
                    next_allowed_at: at,
                } => ext.set("nextAllowedAt", at.to_rfc3339()),
                Self::BudgetExceeded {
                    requested,
                    available,
                } => {
                    ext.set("requested", *requested);
                    ext.set("available", *available);
                }
                Self::GateFailed {
                    target,
                    gates,
                    plan_id,
                    plan_created,
                } => {
                    ext.set("targetState", target.as_str());
                    ext.set(
                        "failingGates",
                        gates
                            .iter()
                            .map(|(gate, _)| async_graphql::Value::from(gate.as_str()))
                            .collect::<Vec<_>>(),
                    );
                    ext.set(
                        "failures",
                        gates
                            .iter()
                            .map(|(gate, why)| {
                                let mut m = async_graphql::indexmap::IndexMap::new();
                                m.insert(async_graphql::Name::new("gate"), gate.as_str().into());
                                m.insert(async_graphql::Name::new("why"), why.as_str().into());
                                async_graphql::Value::Object(m)
                            })
                            .collect::<Vec<_>>(),
                    );
                    ext.set("planId", plan_id.to_string());
                    ext.set("planCreated", *plan_created);
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
            AppError::SubscriptionLagged {
                skipped: 7,
                last_cursor: Some(41),
            },
            AppError::CursorExpired {
                cursor: 3,
                oldest: 40,
            },
            AppError::SubscriptionClosed,
            AppError::BudgetExceeded {
                requested: 10,
                available: 3,
            },
            AppError::AlreadyCommitted,
            AppError::AlreadyReleased,
            AppError::ReservationExpired,
            AppError::PermitAlreadyRecorded,
            AppError::CircuitOpen {
                breaker: "docker".into(),
                retry_after_ms: 1500,
            },
            AppError::LearningDailyLimit {
                next_allowed_at: None,
            },
            AppError::LearningCooldown {
                next_allowed_at: chrono::DateTime::UNIX_EPOCH,
            },
            AppError::FourEyesRequired("someone else must approve".into()),
            AppError::GateFailed {
                target: "REVIEWING".into(),
                gates: vec![("code_quality".into(), "no result reported".into())],
                plan_id: uuid::Uuid::nil(),
                plan_created: true,
            },
            AppError::SandboxUnavailable("the image is missing".into()),
            AppError::IdempotencyKeyReused,
            AppError::IdempotencyInProgress,
            AppError::BadRequest("not json".into()),
            AppError::UnsupportedMediaType,
            AppError::PayloadTooLarge { limit: 10 },
            AppError::BatchTooLarge { max: 10 },
            AppError::ForbiddenOrigin,
            AppError::TooManyConnections,
            AppError::GraphqlParseFailed("unexpected }".into()),
            AppError::GraphqlValidationFailed("unknown field".into()),
            AppError::QueryLimit {
                limit: QueryLimit::Depth,
                message: "deep".into(),
            },
            AppError::QueryLimit {
                limit: QueryLimit::Directives,
                message: "directives".into(),
            },
            AppError::QueryLimit {
                limit: QueryLimit::Complexity,
                message: "complex".into(),
            },
            AppError::QueryLimit {
                limit: QueryLimit::Size,
                message: "large".into(),
            },
            AppError::QueryLimit {
                limit: QueryLimit::Aliases,
                message: "aliases".into(),
            },
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
        assert_eq!(codes.len(), 36, "codes: {codes:?}");
    }

    /// The README's list of codes is complete: every code a client can receive is named there.
    #[test]
    fn every_code_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        let missing: Vec<&str> = every_variant()
            .iter()
            .map(AppError::code)
            .filter(|code| !readme.contains(&format!("`{code}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "codes missing from README.md: {missing:?}"
        );
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
