//! `ObservedSchema`: the schema wrapped for every transport. Every error leaving it gets a
//! stable `extensions.code` and the `extensions.requestId`; errors that arrive without a code
//! are classified (parse, validation, limits, argument coercion) or, when unknown, masked as
//! internal and logged once. It also records one metric sample per operation.
//!
//! A wrapper rather than an async-graphql extension: registering any extension puts a hook
//! chain around every field resolution, which costs more than everything done here.

use std::{
    any::TypeId,
    collections::HashMap,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use async_graphql::{
    Data, Executor, Positioned, Request, Response, ServerError, Value as ConstValue, Variables,
    futures_util::stream::BoxStream,
    parser::types::{
        BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
    },
};
use futures::StreamExt;

use super::{
    AurumSchema,
    context::{ClientAddr, RequestId},
    limits::{self, DocumentLimits},
};
use crate::{
    auth::Caller,
    error::{AppError, QueryLimit},
    rate_limit::{ActionLimiter, LimitedAction},
    telemetry::MetricPair,
};

/// A document that did not parse (or failed a limit while parsing): the parser's errors carry
/// no code, so they get the parse code; a limit's refusal keeps its own.
fn parse_failure(mut err: ServerError) -> ServerError {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", AppError::GraphqlParseFailed(String::new()).code());
    }
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
            let classified = classify_uncoded(&err.message, !err.path.is_empty());
            if classified.is_internal() {
                tracing::error!(
                    request.id = request_id.unwrap_or(""),
                    error.message = %err.message,
                    "masked an uncoded GraphQL error"
                );
                err.message = classified.message();
            }
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", classified.code());
        }
        if let Some(id) = request_id {
            err.extensions
                .get_or_insert_with(Default::default)
                .set("requestId", id);
        }
    }
}

/// Errors raised by async-graphql itself carry no code. Limits and bad values are the
/// client's; an uncoded error without a path comes from validation or operation selection;
/// an uncoded error with a path escaped a resolver without going through `AppError`, and is
/// treated as internal. The error's code and masking come from the returned `AppError`.
fn classify_uncoded(message: &str, in_resolver: bool) -> AppError {
    // async-graphql's own wording for a value that does not fit its type: validation's, and
    // the resolver's when it parses an argument that validation could not check (an input
    // object holding a variable the request left out is skipped by validation whole).
    const BAD_INPUT: [&str; 4] = [
        "Failed to parse",
        "Expected input type",
        "Invalid value for argument",
        "Invalid value for variable",
    ];
    let limit = |limit| AppError::QueryLimit {
        limit,
        message: message.to_owned(),
    };
    if message == "Query is nested too deep."
        || message.starts_with("The recursion depth of the query")
    {
        limit(QueryLimit::Depth)
    } else if message.starts_with("The number of directives on the field") {
        limit(QueryLimit::Directives)
    } else if message == "Query is too complex." {
        limit(QueryLimit::Complexity)
    } else if BAD_INPUT.iter().any(|p| message.starts_with(p))
        || (message.starts_with("Variable \"") && message.contains("invalid"))
        || missing_variable(message)
    {
        AppError::bad_input(message)
    } else if !in_resolver {
        AppError::GraphqlValidationFailed(message.to_owned())
    } else {
        AppError::Internal(anyhow::anyhow!("uncoded resolver error: {message}"))
    }
}

/// async-graphql's wording for a required variable the request left out (unquoted, unlike
/// validation's `Variable "$x" is not defined` for a variable the document never declared).
fn missing_variable(message: &str) -> bool {
    message
        .strip_prefix("Variable ")
        .and_then(|rest| rest.strip_suffix(" is not defined."))
        .is_some_and(|name| !name.is_empty() && !name.contains(['"', ' ']))
}

/// Operation names are client-chosen; past this many distinct names, metrics say `other`.
const MAX_OPERATION_NAMES: usize = 256;

const KINDS: [&str; 4] = ["query", "mutation", "subscription", "unknown"];

/// The metric handles of one operation name: per kind, per outcome (ok, error), registered on
/// first use. Registering builds a labelled key and looks it up in the recorder, which costs
/// more than a whole trivial query; the handles are then reused.
#[derive(Default)]
struct NameMetrics([[OnceLock<MetricPair>; 2]; 4]);

fn names() -> &'static RwLock<HashMap<String, Arc<NameMetrics>>> {
    static NAMES: OnceLock<RwLock<HashMap<String, Arc<NameMetrics>>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

#[cfg(test)]
fn operation_names() -> Vec<String> {
    names()
        .read()
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default()
}

fn operation_metrics(kind: &'static str, name: &str, ok: bool) -> MetricPair {
    let names = names();
    let name = if name.is_empty() { "anonymous" } else { name };
    let clean = name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let name = if clean { name } else { "other" };
    let found = names.read().ok().and_then(|n| n.get(name).cloned());
    let entry = match found {
        Some(entry) => entry,
        None => {
            let Ok(mut names) = names.write() else {
                return register_operation(kind, "other", ok);
            };
            // One slot stays free for `other`.
            let room = names.len() + 1 < MAX_OPERATION_NAMES;
            let name = if room || name == "other" || names.contains_key(name) {
                name
            } else {
                "other"
            };
            names.entry(name.to_owned()).or_default().clone()
        }
    };
    let k = KINDS.iter().position(|k| *k == kind).unwrap_or(3);
    entry.0[k][usize::from(!ok)]
        .get_or_init(|| register_operation(kind, name, ok))
        .clone()
}

fn register_operation(kind: &'static str, name: &str, ok: bool) -> MetricPair {
    let labels = [
        ("type", kind.to_owned()),
        ("name", name.to_owned()),
        ("outcome", if ok { "ok" } else { "error" }.to_owned()),
    ];
    MetricPair {
        count: metrics::counter!("aurum_graphql_operations_total", &labels),
        duration: metrics::histogram!("aurum_graphql_operation_duration_seconds", &labels),
    }
}

/// What the executor knows of a request's operation once its document is parsed.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `query`, `mutation`, `subscription` (or `unknown` when no operation matches).
    pub kind: &'static str,
    pub name: String,
    /// What the `cost` limit charges: the fields the document expands to, a connection's
    /// items weighted by its page size (`limits::charge`).
    pub cost: u64,
    /// Root fields of the operation: what the `mutation` limit charges for mutations.
    pub roots: u64,
    /// A root field has a non-null `after` argument: the subscription resumes from a cursor,
    /// so it replays events of its own and shares no execution with others.
    pub resumes: bool,
}

/// The schema as every transport runs it: documents are parsed once here (so the operation's
/// type and name are known for metrics), per-caller limits are charged before anything runs,
/// and every response leaves with coded errors.
#[derive(Clone)]
pub struct ObservedSchema {
    schema: AurumSchema,
    /// The same schema with `Fast` validation, for cached documents that passed strict
    /// validation once, sent with variables that strict validation could only accept
    /// (`plain_variables`).
    fast: AurumSchema,
    documents: Arc<DocumentCache>,
    limits: DocumentLimits,
    rate: Arc<ActionLimiter>,
}

/// A value of type `T` attached to request or session data.
pub(crate) fn data_of<T: Send + Sync + 'static>(data: &Data) -> Option<&T> {
    data.get(&TypeId::of::<T>())
        .and_then(|d| d.downcast_ref::<T>())
}

impl ObservedSchema {
    pub fn new(
        schema: AurumSchema,
        fast: AurumSchema,
        limits: DocumentLimits,
        rate: Arc<ActionLimiter>,
    ) -> Self {
        Self {
            schema,
            fast,
            documents: Arc::new(DocumentCache::default()),
            limits,
            rate,
        }
    }

    /// Charges the caller's `cost` bucket (and `mutation` bucket for mutations) for `op`, both
    /// or neither (one Redis round trip); refused = `RATE_LIMITED` with `retryAfter`, and
    /// nothing runs.
    pub async fn charge(
        &self,
        op: &Operation,
        caller: &Caller,
        client: Option<&str>,
    ) -> Result<(), ServerError> {
        let Some(key) = caller.limit_key(client) else {
            return Ok(());
        };
        let cost = u32::try_from(op.cost).unwrap_or(u32::MAX);
        let roots = u32::try_from(op.roots).unwrap_or(u32::MAX);
        let charges = [
            (LimitedAction::Cost, cost),
            (LimitedAction::Mutation, roots),
        ];
        let charges = if op.kind == "mutation" {
            &charges[..]
        } else {
            &charges[..1]
        };
        self.rate
            .check_all(charges, &key)
            .await
            .map_err(AppError::into_server_error)
    }

    /// The unwrapped schema (for SDL export and tests).
    pub fn inner(&self) -> &AurumSchema {
        &self.schema
    }

    /// Parses the request's document (through the cache) and says what it will run.
    pub fn operation(&self, request: &mut Request) -> Result<Operation, ServerError> {
        self.parse(request).map(|(op, _)| op)
    }

    /// Parses the request's document, from the cache when the same text was seen before.
    /// Parsing is most of the cost of a small operation. Also returns the document's
    /// `validated` flag when the request's variables are plain (`plain_variables`; always,
    /// for a document without variables): once the flag is set, validation is skipped.
    fn parse(
        &self,
        request: &mut Request,
    ) -> Result<(Operation, Option<Arc<AtomicBool>>), ServerError> {
        let wanted = request.operation_name.clone();
        let pages = self.limits.pages;
        if let Some(cached) = self.documents.get(&request.query) {
            let charge = cached
                .charge
                .unwrap_or_else(|| limits::charge(&cached.doc, &request.variables, pages));
            let mut op = operation_of(&cached.doc, wanted.as_deref(), charge);
            op.resumes = resumes(&cached.doc, wanted.as_deref(), &request.variables);
            let validated = plain_variables(&cached.doc, wanted.as_deref(), &request.variables)
                .then_some(cached.validated);
            request.set_parsed_query(cached.doc);
            return Ok((op, validated));
        }
        let variables = request.variables.clone();
        let doc = request.parsed_query()?;
        // Only documents within the limits are cached, so a cache hit needs no re-check.
        limits::check(doc, self.limits)?;
        let charge = limits::charge(doc, &variables, pages);
        let mut op = operation_of(doc, wanted.as_deref(), charge);
        op.resumes = resumes(doc, wanted.as_deref(), &variables);
        let without_variables = doc
            .operations
            .iter()
            .all(|(_, op)| op.node.variable_definitions.is_empty());
        let validated = Arc::new(AtomicBool::new(false));
        let plain = plain_variables(doc, wanted.as_deref(), &variables);
        let cached = Cached {
            doc: doc.clone(),
            charge: without_variables.then_some(charge),
            validated: validated.clone(),
        };
        self.documents.put(&request.query, cached);
        Ok((op, plain.then_some(validated)))
    }
}

/// A parsed document within the limits.
#[derive(Clone)]
struct Cached {
    doc: ExecutableDocument,
    /// The charged cost, when the document declares no variables (it cannot change).
    charge: Option<u64>,
    /// Set once a strict run of the document succeeded: every rule that depends on the
    /// document alone passed, and only the variables of later requests remain to be checked.
    validated: Arc<AtomicBool>,
}

/// Parsed documents by their text. Bounded: when full it is emptied and refilled, so a client
/// sending endless distinct documents costs a re-parse, never memory.
#[derive(Default)]
struct DocumentCache(std::sync::RwLock<HashMap<String, Cached>>);

impl DocumentCache {
    const MAX_ENTRIES: usize = 512;
    const MAX_QUERY_BYTES: usize = 16 * 1024;

    fn get(&self, query: &str) -> Option<Cached> {
        self.0.read().ok()?.get(query).cloned()
    }

    fn put(&self, query: &str, cached: Cached) {
        if query.len() > Self::MAX_QUERY_BYTES {
            return;
        }
        if let Ok(mut map) = self.0.write() {
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
            map.insert(query.to_owned(), cached);
        }
    }
}

fn request_id_of(request: &Request) -> Option<String> {
    data_of::<RequestId>(&request.data).map(|r| r.0.clone())
}

/// The operation of `doc` a request naming `wanted` runs, with its name.
fn selected<'a>(
    doc: &'a ExecutableDocument,
    wanted: Option<&str>,
) -> Option<(Option<String>, &'a Positioned<OperationDefinition>)> {
    match (&doc.operations, wanted) {
        (DocumentOperations::Single(op), _) => Some((None, op)),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name).map(|op| (Some(name.to_owned()), op))
        }
        (DocumentOperations::Multiple(ops), None) => {
            ops.iter().next().map(|(n, op)| (Some(n.to_string()), op))
        }
    }
}

/// Whether a root field of the selected operation has a non-null `after` argument, or replays
/// by itself (`sandboxRunOutput`); fragments at the root count as resuming: sharing is an
/// optimisation, so doubt runs unshared.
fn resumes(doc: &ExecutableDocument, wanted: Option<&str>, variables: &Variables) -> bool {
    use async_graphql::parser::types::Selection;
    let Some((_, op)) = selected(doc, wanted) else {
        return false;
    };
    op.node
        .selection_set
        .node
        .items
        .iter()
        .any(|item| match &item.node {
            // A run's output replays its stored chunks from an offset for each subscriber.
            Selection::Field(field) if field.node.name.node == "sandboxRunOutput" => true,
            Selection::Field(field) => field.node.arguments.iter().any(|(name, value)| {
                name.node.as_str() == "after"
                    && match &value.node {
                        async_graphql_value::Value::Null => false,
                        async_graphql_value::Value::Variable(v) => variables
                            .get(v)
                            .is_some_and(|value| *value != ConstValue::Null),
                        _ => true,
                    }
            }),
            _ => true,
        })
}

/// Whether strict validation could only accept these variables, so that a document which
/// passed it once may skip it. Of strict validation's rules only one looks at variable values
/// (`ArgumentsOfCorrectType`, which checks each value against its position, which another
/// rule already matched to the variable's declared type); everything else depends on the
/// document alone. Plain: every variable the selected operation declares has a built-in
/// scalar type (no list, enum, input object or custom scalar) and no directives, and its value
/// is of that scalar's kind as async-graphql's own `is_valid` tests it, or is absent or null
/// where the declaration allows. Anything else is validated strictly, so a bad value gets the
/// same error whether or not the document was seen before.
fn plain_variables(doc: &ExecutableDocument, wanted: Option<&str>, variables: &Variables) -> bool {
    let Some((_, op)) = selected(doc, wanted) else {
        return false;
    };
    op.node.variable_definitions.iter().all(|def| {
        let def = &def.node;
        let ty = &def.var_type.node;
        let BaseType::Named(scalar) = &ty.base else {
            return false;
        };
        let builtin = ["String", "Int", "Float", "Boolean", "ID"].contains(&scalar.as_str());
        if !builtin || !def.directives.is_empty() {
            return false;
        }
        match variables.get(&def.name.node) {
            None => ty.nullable || def.default_value.is_some(),
            Some(ConstValue::Null) => ty.nullable,
            Some(value) => match (scalar.as_str(), value) {
                ("String", ConstValue::String(_))
                | ("Boolean", ConstValue::Boolean(_))
                | ("Float", ConstValue::Number(_))
                | ("ID", ConstValue::String(_)) => true,
                ("Int" | "ID", ConstValue::Number(n)) => n.is_i64(),
                _ => false,
            },
        }
    })
}

/// The operation the request will run.
fn operation_of(doc: &ExecutableDocument, wanted: Option<&str>, cost: u64) -> Operation {
    match selected(doc, wanted) {
        None => Operation {
            kind: "unknown",
            name: String::new(),
            cost,
            roots: 0,
            resumes: false,
        },
        Some((name, op)) => {
            let kind = match op.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            Operation {
                kind,
                name: name.unwrap_or_default(),
                cost,
                roots: u64::try_from(op.node.selection_set.node.items.len()).unwrap_or(u64::MAX),
                resumes: false,
            }
        }
    }
}

fn record(kind: &'static str, name: &str, response: &Response, started: Instant) {
    let metrics = operation_metrics(kind, name, response.errors.is_empty());
    metrics.count.increment(1);
    metrics.duration.record(started.elapsed().as_secs_f64());
}

impl Executor for ObservedSchema {
    async fn execute(&self, mut request: Request) -> Response {
        let started = Instant::now();
        let request_id = request_id_of(&request);
        let (op, validated) = match self.parse(&mut request) {
            Ok(parsed) => parsed,
            Err(err) => {
                let mut response = Response::from_errors(vec![parse_failure(err)]);
                finish_errors(&mut response.errors, request_id.as_deref());
                record("unknown", "", &response, started);
                return response;
            }
        };
        crate::telemetry::record_operation(op.kind, &op.name);
        let caller = data_of::<Caller>(&request.data).unwrap_or(&Caller::Anonymous);
        let client = data_of::<ClientAddr>(&request.data).map(|c| c.0.as_str());
        let mut response = match self.charge(&op, caller, client).await {
            Ok(()) => match &validated {
                Some(flag) if flag.load(Ordering::Relaxed) => self.fast.execute(request).await,
                _ => {
                    let response = self.schema.execute(request).await;
                    // No errors at all: validation passed. What it checked of the document
                    // cannot fail later; later variables are checked by `plain_variables`.
                    if let Some(flag) = &validated
                        && response.errors.is_empty()
                    {
                        flag.store(true, Ordering::Relaxed);
                    }
                    response
                }
            },
            Err(err) => Response::from_errors(vec![err]),
        };
        finish_errors(&mut response.errors, request_id.as_deref());
        record(op.kind, &op.name, &response, started);
        response
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let request_id = request_id_of(&request).or_else(|| {
            session_data
                .as_ref()
                .and_then(|d| data_of::<RequestId>(d))
                .map(|r| r.0.clone())
        });
        if let Err(err) = self.parse(&mut request) {
            let mut response = Response::from_errors(vec![parse_failure(err)]);
            finish_errors(&mut response.errors, request_id.as_deref());
            return futures::stream::once(async move { response }).boxed();
        }
        Executor::execute_stream(&self.schema, request, session_data)
            .map(move |mut response| {
                finish_errors(&mut response.errors, request_id.as_deref());
                response
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::INTERNAL_CODE;

    fn code_of(message: &str, in_resolver: bool) -> &'static str {
        classify_uncoded(message, in_resolver).code()
    }
    use crate::graphql::limits::tests::doc;

    #[test]
    fn uncoded_errors_are_classified_or_masked() {
        assert_eq!(
            code_of("Failed to parse \"Int\": x", true),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            code_of(
                "Expected input type \"String\", found 5. (occurred while parsing \"CreateTaskInput\")",
                true
            ),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            code_of("Variable t is not defined.", true),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            code_of("Variable n is not defined.", false),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            code_of("Variable \"$x\" is not defined by operation \"A\"", false),
            "GRAPHQL_VALIDATION_FAILED"
        );
        assert_eq!(
            code_of("Unknown operation named \"X\"", false),
            "GRAPHQL_VALIDATION_FAILED"
        );
        assert_eq!(
            code_of("connection refused (10.0.0.3)", true),
            INTERNAL_CODE
        );
        let mut err = ServerError::new("pool timed out: secret", None);
        err.path = vec![async_graphql::PathSegment::Field("tasks".into())];
        let mut errs = vec![err];
        finish_errors(&mut errs, Some("req-1"));
        let ext = errs[0].extensions.as_ref();
        assert_eq!(errs[0].message, "internal error");
        assert_eq!(ext.and_then(|e| e.get("code")), Some(&INTERNAL_CODE.into()));
        assert_eq!(ext.and_then(|e| e.get("requestId")), Some(&"req-1".into()));
    }

    #[test]
    fn only_plain_variables_skip_strict_validation() {
        let parsed = doc(
            "mutation($s: String!, $n: Int, $f: Float, $b: Boolean, $id: ID!, $d: Int! = 3) \
             { a(s: $s, n: $n, f: $f, b: $b, id: $id, d: $d) }",
        );
        let vars = |v: serde_json::Value| Variables::from_json(v);
        let good = serde_json::json!({ "s": "x", "n": 1, "f": 1.5, "b": true, "id": 7 });
        assert!(plain_variables(&parsed, None, &vars(good.clone())));
        // Absent or null where nullable; a non-null variable with a default may be absent.
        assert!(plain_variables(
            &parsed,
            None,
            &vars(serde_json::json!({ "s": "x", "id": "i", "n": null }))
        ));
        for bad in [
            serde_json::json!({ "s": 1, "id": "i" }),
            serde_json::json!({ "s": "x", "id": "i", "n": 1.5 }),
            serde_json::json!({ "s": "x", "id": "i", "n": "1" }),
            serde_json::json!({ "s": "x", "id": "i", "f": "1" }),
            serde_json::json!({ "s": "x", "id": "i", "b": 1 }),
            serde_json::json!({ "s": "x", "id": 1.5 }),
            serde_json::json!({ "s": "x", "id": ["i"] }),
            serde_json::json!({ "s": null, "id": "i" }),
            serde_json::json!({ "id": "i" }),
            serde_json::json!({ "s": "x", "id": "i", "d": null }),
            serde_json::json!({ "s": { "o": 1 }, "id": "i" }),
        ] {
            assert!(!plain_variables(&parsed, None, &vars(bad.clone())), "{bad}");
        }
        // Lists, enums, input objects, custom scalars and directives always go strict.
        for query in [
            "query($l: [String!]) { a(l: $l) }",
            "query($e: TaskState) { a(e: $e) }",
            "mutation($i: CreateTaskInput!) { a(i: $i) }",
            "query($t: DateTime) { a(t: $t) }",
            "query($s: String @deprecated) { a(s: $s) }",
        ] {
            assert!(
                !plain_variables(&doc(query), None, &vars(serde_json::json!({}))),
                "{query}"
            );
        }
        // The selected operation's own declarations count; an unknown operation is not plain.
        let two = doc("query A($s: String!) { a(s: $s) } query B($l: [Int]) { b(l: $l) }");
        assert!(plain_variables(
            &two,
            Some("A"),
            &vars(serde_json::json!({ "s": "x" }))
        ));
        assert!(!plain_variables(
            &two,
            Some("B"),
            &vars(serde_json::json!({ "l": [1] }))
        ));
        assert!(!plain_variables(
            &two,
            Some("C"),
            &vars(serde_json::json!({}))
        ));
        // No variables at all: plain.
        let none = doc("{ a }");
        assert!(plain_variables(
            &none,
            None,
            &vars(serde_json::json!({ "x": 1 }))
        ));
    }

    #[test]
    fn limit_messages_have_their_own_codes() {
        assert_eq!(
            code_of("Query is nested too deep.", false),
            "QUERY_TOO_DEEP"
        );
        assert_eq!(code_of("Query is too complex.", false), "QUERY_TOO_COMPLEX");
        assert_eq!(
            code_of("Unknown field \"x\"", false),
            "GRAPHQL_VALIDATION_FAILED"
        );
    }

    #[test]
    fn operation_names_are_bounded() {
        let _recorder = crate::telemetry::metrics_handle();
        for i in 0..MAX_OPERATION_NAMES + 10 {
            operation_metrics("query", &format!("Name{i}"), true);
        }
        operation_metrics("query", "bad name!", true);
        let names = operation_names();
        assert!(names.len() <= MAX_OPERATION_NAMES, "{} names", names.len());
        assert!(!names.iter().any(|n| n == "bad name!"));
    }
}
