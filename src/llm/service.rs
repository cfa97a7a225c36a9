//! LLM output validation as clients call it: the output kinds (the built-in schema files and
//! the kinds administrators registered), extraction, validation and repair of one text. The
//! work itself is pure (`extract`, `check`); this adds the registry, input limits and audit.
//! Compiled schemas are cached per process: registered kinds never change, so a cached
//! schema can never be stale.

use std::{
    collections::HashMap,
    ops::{Deref, Range},
    sync::{Arc, RwLock},
};

use entity::llm_output_kind;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::{Value, json};

use super::{
    check::{self, Fix, Schema, Violation},
    extract::{self, NotFound, Source},
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    infra::db,
};

/// Largest text `validateLlmOutput` takes (bytes).
pub const TEXT_MAX: usize = 1 << 20;
/// Largest schema a kind may register (bytes of JSON).
pub const SCHEMA_MAX: usize = 256 * 1024;
/// Longest description of a kind.
pub const DESCRIPTION_MAX: usize = 2_000;

/// The outcome of validating one text as one kind.
#[derive(Debug, Clone)]
pub struct Validation {
    pub kind: String,
    pub valid: bool,
    /// The value after normalisation and repair; `None` when no JSON was found.
    pub value: Option<Value>,
    pub errors: Vec<Violation>,
    pub fixes: Vec<Fix>,
    /// A failed validation was repaired (the fixes beyond normalisation made it change).
    pub repaired: bool,
    /// Where the value came from in the text.
    pub source: Option<Source>,
    /// Byte range of the parsed JSON in the text.
    pub span: Option<Range<usize>>,
}

/// An output kind as listed.
#[derive(Debug, Clone)]
pub struct KindInfo {
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub schema: Value,
    pub created_by: Option<String>,
}

/// A kind's compiled schema: a built-in one lives for the whole process.
enum Held {
    Builtin(&'static Schema),
    Registered(Arc<Schema>),
}

impl Deref for Held {
    type Target = Schema;
    fn deref(&self) -> &Schema {
        match self {
            Self::Builtin(s) => s,
            Self::Registered(s) => s,
        }
    }
}

/// LLM output validation and the registry of output kinds.
#[derive(Clone)]
pub struct LlmService {
    db: DatabaseConnection,
    registered: Arc<RwLock<HashMap<String, Arc<Schema>>>>,
}

/// Kind names: upper-case letters, digits and `_`, starting with a letter, at most 64.
pub fn kind_name(value: &str) -> AppResult<String> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_uppercase())
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(AppError::bad_field(
            "kind",
            "kind must be 1-64 characters from [A-Z0-9_], starting with a letter",
        ))
    }
}

impl LlmService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            registered: Arc::default(),
        }
    }

    /// The compiled schema of `kind`: built in, cached, or read and compiled once.
    async fn schema(&self, kind: &str) -> AppResult<Held> {
        if let Some(s) = check::builtin(kind) {
            return Ok(Held::Builtin(s));
        }
        if let Some(s) = self
            .registered
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kind)
        {
            return Ok(Held::Registered(Arc::clone(s)));
        }
        let row = llm_output_kind::Entity::find_by_id(kind.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::bad_field("kind", format!("unknown output kind `{kind}`")))?;
        let raw: Value = serde_json::from_str(&row.schema)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("stored schema of {kind}: {e}")))?;
        let schema =
            Arc::new(Schema::compile(raw).map_err(|e| {
                AppError::Internal(anyhow::anyhow!("stored schema of {kind}: {e}"))
            })?);
        self.registered
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.to_owned(), Arc::clone(&schema));
        Ok(Held::Registered(schema))
    }

    /// Extracts the JSON value from `text`, validates it as `kind`, normalises it and, when
    /// it fails, repairs what the schema documents; the text itself is never rewritten.
    pub async fn validate(&self, kind: &str, text: &str) -> AppResult<Validation> {
        let kind = kind_name(kind)?;
        if text.len() > TEXT_MAX {
            return Err(AppError::bad_field(
                "text",
                format!("text must be at most {TEXT_MAX} bytes"),
            ));
        }
        let schema = self.schema(&kind).await?;
        let v = validate_with(&kind, &schema, text);
        let outcome = match (v.valid, v.repaired) {
            (true, false) => "valid",
            (true, true) => "repaired",
            (false, _) => "invalid",
        };
        metrics::counter!("aurum_llm_validations_total", "kind" => kind, "outcome" => outcome)
            .increment(1);
        Ok(v)
    }

    /// Every kind: the built-in ones first, then the registered ones by name.
    pub async fn kinds(&self) -> AppResult<Vec<KindInfo>> {
        let mut out: Vec<KindInfo> = check::BUILTIN
            .iter()
            .filter_map(|name| {
                check::builtin(name).map(|s| KindInfo {
                    name: (*name).to_owned(),
                    description: s
                        .raw()
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    builtin: true,
                    schema: s.raw().clone(),
                    created_by: None,
                })
            })
            .collect();
        for row in llm_output_kind::Entity::find()
            .order_by_asc(llm_output_kind::Column::Name)
            .all(&self.db)
            .await?
        {
            out.push(KindInfo {
                schema: serde_json::from_str(&row.schema).unwrap_or(Value::Null),
                name: row.name,
                description: row.description,
                builtin: false,
                created_by: Some(row.created_by),
            });
        }
        Ok(out)
    }

    /// Registers a new output kind with its JSON Schema (checked by compiling it). A kind
    /// never changes once registered: a taken name is `CONFLICT`.
    pub async fn register_kind(
        &self,
        meta: &RequestMeta,
        name: &str,
        description: &str,
        schema: Value,
    ) -> AppResult<KindInfo> {
        let name = kind_name(name).map_err(|_| {
            AppError::bad_field(
                "name",
                "name must be 1-64 characters from [A-Z0-9_], starting with a letter",
            )
        })?;
        if check::builtin(&name).is_some() {
            return Err(AppError::Conflict(format!("`{name}` is a built-in kind")));
        }
        let description = description.trim();
        if description.chars().count() > DESCRIPTION_MAX {
            return Err(AppError::bad_field(
                "description",
                format!("description must be at most {DESCRIPTION_MAX} characters"),
            ));
        }
        let text = schema.to_string();
        if text.len() > SCHEMA_MAX {
            return Err(AppError::bad_field(
                "schema",
                format!("schema must be at most {SCHEMA_MAX} bytes"),
            ));
        }
        Schema::compile(schema.clone())
            .map_err(|m| AppError::bad_field("schema", format!("not a valid JSON Schema: {m}")))?;
        let row = llm_output_kind::Model {
            name: name.clone(),
            description: description.to_owned(),
            schema: text,
            created_by: meta.caller.audit_label(),
            created_at: clock::now(),
        };
        let txn = db::begin_write(&self.db).await?;
        llm_output_kind::Entity::insert(llm_output_kind::ActiveModel::from(row.clone()))
            .exec_without_returning(&txn)
            .await
            .map_err(|e| match AppError::from(e) {
                AppError::Conflict(_) => {
                    AppError::Conflict(format!("output kind `{name}` already exists"))
                }
                other => other,
            })?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "llm.register_kind",
                entity_type: "llm_output_kind",
                entity_id: Some(name.clone()),
                tenant_id: None,
                details: json!({ "description": row.description }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(KindInfo {
            name,
            description: row.description,
            builtin: false,
            schema,
            created_by: Some(row.created_by),
        })
    }
}

/// Extracts, checks and repairs `text` as `kind` against `schema` (pure; the benchmark's
/// direct path runs the same).
pub fn validate_with(kind: &str, schema: &Schema, text: &str) -> Validation {
    match extract::extract(text) {
        Ok(found) => {
            let checked = check::check(schema, found.value);
            Validation {
                kind: kind.to_owned(),
                valid: checked.valid,
                value: Some(checked.value),
                errors: checked.errors,
                fixes: checked.fixes,
                repaired: checked.repaired,
                source: Some(found.source),
                span: Some(found.span),
            }
        }
        Err(why) => Validation {
            kind: kind.to_owned(),
            valid: false,
            value: None,
            errors: vec![Violation {
                pointer: String::new(),
                message: match why {
                    NotFound::Empty => "the text is empty".to_owned(),
                    NotFound::Truncated { at } => format!(
                        "the JSON value starting at byte {at} never ends (truncated output?)"
                    ),
                    NotFound::NoJson => "the text holds no JSON object or array".to_owned(),
                },
            }],
            fixes: Vec::new(),
            repaired: false,
            source: None,
            span: None,
        },
    }
}
