//! The GraphQL error and metrics extension. Every error leaving the schema gets a stable
//! `extensions.code` and the `extensions.requestId`; errors that reach here without a code
//! are classified (parse, validation, limits, argument coercion) or, when unknown, masked as
//! internal and logged once. It also records one metric sample per operation.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use async_graphql::{
    Response, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextRequest, NextSubscribe, NextValidation,
    },
    futures_util::stream::BoxStream,
    parser::types::{ExecutableDocument, OperationType},
};
use futures::StreamExt;

use super::context::RequestId;
use crate::error::INTERNAL_CODE;

/// Code of documents that do not parse.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// Code of documents that break a validation rule.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// Code of documents nested deeper than the limit.
pub const QUERY_TOO_DEEP: &str = "QUERY_TOO_DEEP";
/// Code of documents more complex than the limit.
pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

/// Factory registered on the schema.
pub struct Observability;

impl ExtensionFactory for Observability {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObservabilityExtension {
            operation: Mutex::new(None),
            request_id: Mutex::new(None),
        })
    }
}

struct ObservabilityExtension {
    /// (type, name) of the operation, known after parsing.
    operation: Mutex<Option<(&'static str, String)>>,
    /// The request id, read from request data in `prepare_request` (the `request` hook runs
    /// before request data is visible to extensions).
    request_id: Mutex<Option<String>>,
}

fn with_code(mut err: ServerError, code: &'static str) -> ServerError {
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    err
}

/// Gives every error a code and the request id; masks what cannot be classified.
fn finish_errors(errors: &mut [ServerError], request_id: Option<&str>) {
    for err in errors {
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            let code = classify_uncoded(&err.message);
            if code == INTERNAL_CODE {
                tracing::error!(
                    request.id = request_id.unwrap_or(""),
                    error.message = %err.message,
                    "masked an uncoded GraphQL error"
                );
                err.message = "internal error".into();
            }
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", code);
        }
        if let Some(id) = request_id {
            err.extensions
                .get_or_insert_with(Default::default)
                .set("requestId", id);
        }
    }
}

/// Errors raised by async-graphql itself during execution carry no code. The ones below come
/// from argument and variable coercion or operation selection (the client's fault); anything
/// else is treated as internal.
fn classify_uncoded(message: &str) -> &'static str {
    const BAD_INPUT: [&str; 4] = [
        "Failed to parse",
        "Invalid value for argument",
        "Invalid value for variable",
        "Variable \"",
    ];
    const INVALID: [&str; 4] = [
        "Unknown operation",
        "Operation name required",
        "Schema is not configured",
        "Missing operation",
    ];
    if BAD_INPUT.iter().any(|p| message.starts_with(p)) {
        "BAD_USER_INPUT"
    } else if INVALID.iter().any(|p| message.starts_with(p)) {
        VALIDATION_FAILED
    } else {
        INTERNAL_CODE
    }
}

fn validation_code(message: &str) -> &'static str {
    if message == "Query is nested too deep." {
        QUERY_TOO_DEEP
    } else if message == "Query is too complex." {
        QUERY_TOO_COMPLEX
    } else if message.starts_with("Invalid value for argument")
        || (message.starts_with("Variable \"") && message.contains("invalid"))
    {
        // The document is fine; a value in it (or in the variables) is not.
        "BAD_USER_INPUT"
    } else {
        VALIDATION_FAILED
    }
}

/// Operation names are client-chosen; past this many distinct names, metrics say `other`.
const MAX_OPERATION_NAMES: usize = 256;

fn metric_name(name: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let clean = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !clean {
        return "other".into();
    }
    let seen = SEEN.get_or_init(Default::default);
    let Ok(mut seen) = seen.lock() else {
        return "other".into();
    };
    if seen.contains(name) || seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        name.to_owned()
    } else {
        "other".into()
    }
}

impl ObservabilityExtension {
    fn operation(&self) -> (&'static str, String) {
        self.operation
            .lock()
            .ok()
            .and_then(|o| o.clone())
            .unwrap_or(("unknown", String::new()))
    }
}

#[async_trait::async_trait]
impl Extension for ObservabilityExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let mut response = next.run(ctx).await;
        let request_id = self.request_id.lock().ok().and_then(|r| r.clone());
        finish_errors(&mut response.errors, request_id.as_deref());
        let (kind, name) = self.operation();
        let outcome = if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        let name = if name.is_empty() {
            "anonymous".into()
        } else {
            metric_name(&name)
        };
        let labels = [
            ("type", kind.to_owned()),
            ("name", name),
            ("outcome", outcome.to_owned()),
        ];
        metrics::counter!("aurum_graphql_operations_total", &labels).increment(1);
        metrics::histogram!("aurum_graphql_operation_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let request_id = ctx.data_opt::<RequestId>().map(|r| r.0.clone());
        next.run(ctx, stream)
            .map(move |mut response| {
                finish_errors(&mut response.errors, request_id.as_deref());
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        let id = request
            .data
            .get(&std::any::TypeId::of::<RequestId>())
            .and_then(|d| d.downcast_ref::<RequestId>())
            .map(|r| r.0.clone())
            .or_else(|| ctx.data_opt::<RequestId>().map(|r| r.0.clone()));
        if let Ok(mut slot) = self.request_id.lock() {
            *slot = id;
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, PARSE_FAILED))?;
        // The first operation names the request in metrics; documents with several name one
        // per request via operationName, which `execute` reports.
        if let Some((name, op)) = doc.operations.iter().next() {
            let kind = match op.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            if let Ok(mut slot) = self.operation.lock() {
                *slot = Some((kind, name.map(|n| n.to_string()).unwrap_or_default()));
            }
        }
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = validation_code(&e.message);
                    with_code(e, code)
                })
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let (Some(name), Ok(mut slot)) = (operation_name, self.operation.lock())
            && let Some((_, current)) = slot.as_mut()
        {
            name.clone_into(current);
        }
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncoded_errors_are_classified_or_masked() {
        assert_eq!(
            classify_uncoded("Failed to parse \"Int\": x"),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            classify_uncoded("Unknown operation named \"X\""),
            VALIDATION_FAILED
        );
        assert_eq!(
            classify_uncoded("connection refused (10.0.0.3)"),
            INTERNAL_CODE
        );
        let mut errs = vec![ServerError::new("pool timed out: secret", None)];
        finish_errors(&mut errs, Some("req-1"));
        let ext = errs[0].extensions.as_ref();
        assert_eq!(errs[0].message, "internal error");
        assert_eq!(ext.and_then(|e| e.get("code")), Some(&INTERNAL_CODE.into()));
        assert_eq!(ext.and_then(|e| e.get("requestId")), Some(&"req-1".into()));
    }

    #[test]
    fn limit_messages_have_their_own_codes() {
        assert_eq!(validation_code("Query is nested too deep."), QUERY_TOO_DEEP);
        assert_eq!(validation_code("Query is too complex."), QUERY_TOO_COMPLEX);
        assert_eq!(validation_code("Unknown field \"x\""), VALIDATION_FAILED);
    }

    #[test]
    fn operation_names_are_bounded() {
        assert_eq!(metric_name("bad name!"), "other");
        assert_eq!(metric_name("GetTasks"), "GetTasks");
    }
}
