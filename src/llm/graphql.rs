//! GraphQL surface of LLM output validation: thin resolvers over `LlmService`.

use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject};
use serde_json::Value;

use super::{
    check::{Fix, FixKind, Violation},
    extract::Source,
    service::{KindInfo, Validation},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    graphql::context::{meta, services},
};

/// Where the validated value was found in the text.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "LlmOutputSource", remote = "Source")]
pub enum SourceGql {
    /// A fenced code block (```json … ```).
    Fence,
    /// The first balanced JSON object.
    Object,
    /// A JSON array.
    Array,
}

/// What a fix did.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "LlmOutputFixKind", remote = "FixKind")]
pub enum FixKindGql {
    /// Surrounding blanks removed (a documented normalisation).
    Trimmed,
    /// Lower-cased (a documented normalisation).
    Lowercased,
    /// A missing optional field got its documented default.
    Defaulted,
    /// A number or boolean written as a string became one.
    Coerced,
    /// A field under a known old name was renamed.
    Renamed,
    /// A number outside its documented range was brought into it.
    Clamped,
}

/// One way the value breaks its schema.
#[derive(SimpleObject)]
#[graphql(name = "LlmOutputError")]
pub struct ErrorGql {
    /// JSON Pointer of the offending value ("" for the whole value).
    pub pointer: String,
    pub message: String,
}

impl From<Violation> for ErrorGql {
    fn from(v: Violation) -> Self {
        Self {
            pointer: v.pointer,
            message: v.message,
        }
    }
}

/// One change made to the value before (re)validation.
#[derive(SimpleObject)]
#[graphql(name = "LlmOutputFix")]
pub struct FixGql {
    /// JSON Pointer of the value as it is now.
    pub pointer: String,
    pub kind: FixKindGql,
    pub message: String,
    pub from: Option<Json<Value>>,
    pub to: Option<Json<Value>>,
}

impl From<Fix> for FixGql {
    fn from(f: Fix) -> Self {
        Self {
            pointer: f.pointer,
            kind: f.kind.into(),
            message: f.message,
            from: f.from.map(Json),
            to: f.to.map(Json),
        }
    }
}

/// The outcome of validating one model output.
#[derive(SimpleObject)]
pub struct LlmOutputValidation {
    pub kind: String,
    pub valid: bool,
    /// The value, normalised and (where it could be) repaired; null when no JSON was found.
    pub value: Option<Json<Value>>,
    /// What is still wrong (empty when valid).
    pub errors: Vec<ErrorGql>,
    /// Every change made, in order.
    pub fixes: Vec<FixGql>,
    /// The value failed validation as written and was repaired.
    pub repaired: bool,
    pub source: Option<SourceGql>,
    /// Byte offset of the parsed JSON in the text.
    pub start: Option<u64>,
    /// Byte offset just past it.
    pub end: Option<u64>,
}

impl From<Validation> for LlmOutputValidation {
    fn from(v: Validation) -> Self {
        Self {
            kind: v.kind,
            valid: v.valid,
            value: v.value.map(Json),
            errors: v.errors.into_iter().map(Into::into).collect(),
            fixes: v.fixes.into_iter().map(Into::into).collect(),
            repaired: v.repaired,
            source: v.source.map(Into::into),
            start: v.span.as_ref().map(|s| s.start as u64),
            end: v.span.as_ref().map(|s| s.end as u64),
        }
    }
}

/// An output kind and its JSON Schema.
#[derive(SimpleObject)]
pub struct LlmOutputKind {
    /// `SYNTHESIS`, `PATTERN`, `CONSENSUS`, or a registered name.
    pub name: String,
    pub description: String,
    /// Shipped with Aurum (a schema file in the repository).
    pub builtin: bool,
    pub schema: Json<Value>,
    pub created_by: Option<String>,
}

impl From<KindInfo> for LlmOutputKind {
    fn from(k: KindInfo) -> Self {
        Self {
            name: k.name,
            description: k.description,
            builtin: k.builtin,
            schema: Json(k.schema),
            created_by: k.created_by,
        }
    }
}

#[derive(Default)]
pub struct LlmQuery;

#[Object]
impl LlmQuery {
    #[graphql(guard = "Require(Permission::LlmValidate)")]
    /// Extracts the JSON in a model's `text` (a fenced json block, else the first balanced
    /// object, else an array), validates it against `kind`'s JSON Schema, normalises the
    /// documented fields and repairs documented faults; the text is never rewritten.
    async fn validate_llm_output(
        &self,
        ctx: &Context<'_>,
        kind: String,
        text: String,
    ) -> Result<LlmOutputValidation> {
        Ok(services(ctx)?.llm.validate(&kind, &text).await?.into())
    }

    #[graphql(guard = "Require(Permission::LlmValidate)")]
    /// Every output kind with its schema.
    async fn llm_output_kinds(&self, ctx: &Context<'_>) -> Result<Vec<LlmOutputKind>> {
        let kinds = services(ctx)?.llm.kinds().await?;
        Ok(kinds.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct LlmMutation;

#[Object]
impl LlmMutation {
    #[graphql(guard = "Require(Permission::SystemAdmin)")]
    /// Registers an output kind with its JSON Schema (draft 2020-12 unless `$schema` says
    /// otherwise; the `x-aurum-*` keywords of the built-in schemas drive normalisation and
    /// repair). Kinds never change once registered.
    async fn register_llm_output_kind(
        &self,
        ctx: &Context<'_>,
        name: String,
        description: String,
        schema: Json<Value>,
    ) -> Result<LlmOutputKind> {
        Ok(services(ctx)?
            .llm
            .register_kind(&meta(ctx), &name, &description, schema.0)
            .await?
            .into())
    }
}
