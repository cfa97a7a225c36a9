//! Checking an extracted value against a kind's JSON Schema, with normalisation and repair.
//!
//! Owns the compiled schemas (the three built-in kinds, read from `schemas/llm/*.json`, and
//! any schema an admin registers), validation through the `jsonschema` crate, and the
//! schema-driven normalisation and repair described on [`check`]. Everything a kind needs is
//! in its schema: there is no per-kind Rust code here, and there must not be. It does not
//! extract JSON from text (that is `extract`), and it never changes a string's bytes except
//! by the trimming or lowercasing its schema asks for.
//!
//! # Extension keywords
//!
//! The validator ignores these; [`Schema::compile`] checks their form and rejects any other
//! `x-aurum-` keyword, so a typo cannot silently disable a repair.
//!
//! - `"x-aurum-trim": true`: trim whitespace around a string (normalisation).
//! - `"x-aurum-lowercase": true`: lowercase a string (normalisation, after trimming).
//! - `"x-aurum-clamp": true`: with `minimum` and/or `maximum`, move an out-of-range number to
//!   the bound (repair). `exclusiveMinimum`/`exclusiveMaximum` are not clamped.
//! - `"x-aurum-aliases": ["old", ...]` on a property's schema: old names renamed to the
//!   property when it is missing (repair). An alias that is itself a declared property of the
//!   same object is never renamed away.
//!
//! Standard `default` on a property that is not `required` fills it in when missing
//! (normalisation). A missing optional property found under one of its aliases is renamed
//! during normalisation instead (so a valid document does not lose it to the default);
//! a missing required one is renamed by the repair.
//!
//! # What the walk sees
//!
//! Normalisation and repair walk the schema and the value together through `properties`
//! and `items` (the single-schema form), reading `type`, `required`, `default`, `minimum`,
//! `maximum` and the extension keywords. They do not see through `$ref`, `allOf`, `anyOf`,
//! `oneOf`, `if`/`then`/`else`, `prefixItems`, `patternProperties` or
//! `additionalProperties`; validation of course does.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Number, Value};

/// A compiled JSON Schema with the raw document it came from.
pub struct Schema {
    raw: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("id", &self.raw.get("$id"))
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// Compiles `raw` (any draft the validator knows; `$schema` picks it, 2020-12 otherwise).
    ///
    /// # Errors
    ///
    /// A message when `raw` is not a valid schema, refers to a schema that cannot be
    /// resolved offline, or misuses an `x-aurum-` keyword.
    pub fn compile(raw: Value) -> Result<Schema, String> {
        let validator =
            jsonschema::validator_for(&raw).map_err(|error| format!("invalid schema: {error}"))?;
        let mut problems = Vec::new();
        lint_extensions(&raw, &mut String::new(), &mut problems);
        if !problems.is_empty() {
            return Err(format!("invalid schema: {}", problems.join("; ")));
        }
        Ok(Schema { raw, validator })
    }

    /// The schema document as it was compiled.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Every way `value` breaks the schema, in the validator's order; empty when valid.
    pub fn validate(&self, value: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(value)
            .map(|error| {
                let full = error.to_string();
                Violation {
                    pointer: error.instance_path().as_str().to_owned(),
                    // The validator quotes the offending value; a 2000-character string or a
                    // whole object would bury the point, and the pointer already locates it.
                    message: if full.len() > MAX_MESSAGE {
                        error.masked().to_string()
                    } else {
                        full
                    },
                }
            })
            .collect()
    }
}

/// Longest violation message that still quotes the offending value.
const MAX_MESSAGE: usize = 200;

/// The built-in kinds' names, as [`builtin`] takes them.
pub const BUILTIN: [&str; 3] = ["SYNTHESIS", "PATTERN", "CONSENSUS"];

type Compiled = LazyLock<Result<Schema, String>>;

static SYNTHESIS: Compiled =
    LazyLock::new(|| load(include_str!("../../schemas/llm/synthesis.json")));
static PATTERN: Compiled = LazyLock::new(|| load(include_str!("../../schemas/llm/pattern.json")));
static CONSENSUS: Compiled =
    LazyLock::new(|| load(include_str!("../../schemas/llm/consensus.json")));

/// Parses and compiles a schema file.
///
/// # Errors
///
/// The parse or compile error, as a message.
pub(crate) fn load(text: &str) -> Result<Schema, String> {
    let raw = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    Schema::compile(raw)
}

/// The built-in schema named by one of [`BUILTIN`], compiled on first use.
///
/// `None` for any other name, and for a built-in that does not compile; the latter is a
/// programming error that the unit tests catch, so it is not reported at run time.
pub fn builtin(name: &str) -> Option<&'static Schema> {
    let compiled: &'static Compiled = match name {
        "SYNTHESIS" => &SYNTHESIS,
        "PATTERN" => &PATTERN,
        "CONSENSUS" => &CONSENSUS,
        _ => return None,
    };
    LazyLock::force(compiled).as_ref().ok()
}

/// One way a value breaks its schema. Serialisable: task outputs store their errors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// JSON pointer to the offending part of the value; `""` for the value itself.
    pub pointer: String,
    /// The validator's description of the problem; it quotes the offending value unless
    /// that would make it longer than 200 characters.
    pub message: String,
}

/// What a [`Fix`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FixKind {
    /// Whitespace trimmed around a string (`x-aurum-trim`).
    Trimmed,
    /// A string lowercased (`x-aurum-lowercase`).
    Lowercased,
    /// A missing optional property given its `default`.
    Defaulted,
    /// A string holding a number or boolean turned into one, as the schema's `type` wants.
    Coerced,
    /// A property found under an old name moved to its name (`x-aurum-aliases`).
    Renamed,
    /// A number moved into `minimum`..`maximum` (`x-aurum-clamp`).
    Clamped,
}

/// One change made to the value. Serialisable: task outputs store their fixes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fix {
    /// JSON pointer to where the changed value now is.
    pub pointer: String,
    /// What was done.
    pub kind: FixKind,
    /// The value before (for a rename, the old name); `None` when it was missing.
    pub from: Option<Value>,
    /// The value after (for a rename, the new name).
    pub to: Option<Value>,
    /// The change in words, e.g. "renamed `reasoning` to `synthesis_reasoning`".
    pub message: String,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Whether the final value satisfies the schema.
    pub valid: bool,
    /// The value after normalisation and any repair.
    pub value: Value,
    /// Every way the final value breaks the schema; empty when valid.
    pub errors: Vec<Violation>,
    /// Every change made, in the order made.
    pub fixes: Vec<Fix>,
    /// Whether the repair ran and changed something.
    pub repaired: bool,
}

/// Normalises `value`, validates it, and repairs it when invalid.
///
/// 1. Normalise (always): trim and lowercase strings as the schema asks; fill in missing
///    optional properties of existing objects, from an alias if one is present, else from
///    their `default`.
/// 2. Validate. When valid, stop (`repaired` is false).
/// 3. Repair: rename aliased properties, turn strings holding numbers or booleans into them
///    where the schema's `type` wants one and not a string, clamp numbers; then normalise
///    again (a renamed or coerced value has not been normalised yet) and validate again.
///
/// Within each pass, properties are visited in the order of their names and array items in
/// order, so the fixes come in the same order for the same input.
pub fn check(schema: &Schema, mut value: Value) -> Checked {
    let mut fixes = Vec::new();
    normalise(&schema.raw, &mut value, &mut String::new(), &mut fixes);
    if schema.validator.is_valid(&value) {
        return Checked {
            valid: true,
            value,
            errors: Vec::new(),
            fixes,
            repaired: false,
        };
    }
    let before = fixes.len();
    repair(&schema.raw, &mut value, &mut String::new(), &mut fixes);
    let repaired = fixes.len() > before;
    if repaired {
        normalise(&schema.raw, &mut value, &mut String::new(), &mut fixes);
    }
    let errors = schema.validate(&value);
    Checked {
        valid: errors.is_empty(),
        value,
        errors,
        fixes,
        repaired,
    }
}

/// Pass 1 (and the end of pass 3): trim, lowercase, defaults.
fn normalise(schema: &Value, value: &mut Value, pointer: &mut String, fixes: &mut Vec<Fix>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    match value {
        Value::String(text) => normalise_string(schema, text, pointer, fixes),
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            let required = required(schema);
            for (name, property) in sorted(properties) {
                let len = push_key(pointer, name);
                if !map.contains_key(name) && !required.contains(name.as_str()) {
                    // An optional property under an old name is recovered rather than
                    // defaulted: a valid document never reaches the repair, and the default
                    // would silently replace what the model said.
                    if !rename_from_alias(map, properties, name, property, pointer, fixes)
                        && let Some(default) = property.get("default")
                    {
                        fixes.push(Fix {
                            pointer: pointer.clone(),
                            kind: FixKind::Defaulted,
                            from: None,
                            to: Some(default.clone()),
                            message: format!(
                                "added missing `{name}` with its default {}",
                                short(default)
                            ),
                        });
                        map.insert(name.clone(), default.clone());
                    }
                }
                if let Some(child) = map.get_mut(name) {
                    normalise(property, child, pointer, fixes);
                }
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            let Some(item) = schema.get("items").filter(|s| s.is_object()) else {
                return;
            };
            for (index, child) in items.iter_mut().enumerate() {
                let len = push_index(pointer, index);
                normalise(item, child, pointer, fixes);
                pointer.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn normalise_string(
    schema: &Map<String, Value>,
    text: &mut String,
    pointer: &str,
    fixes: &mut Vec<Fix>,
) {
    if flag(schema, "x-aurum-trim") {
        let trimmed = text.trim();
        if trimmed.len() != text.len() {
            let trimmed = trimmed.to_owned();
            fixes.push(Fix {
                pointer: pointer.to_owned(),
                kind: FixKind::Trimmed,
                from: Some(Value::String(text.clone())),
                to: Some(Value::String(trimmed.clone())),
                message: "trimmed the whitespace around the string".to_owned(),
            });
            *text = trimmed;
        }
    }
    if flag(schema, "x-aurum-lowercase") {
        let lower = text.to_lowercase();
        if lower != *text {
            let (from, to) = (Value::String(text.clone()), Value::String(lower.clone()));
            fixes.push(Fix {
                pointer: pointer.to_owned(),
                message: format!("lowercased {} to {}", short(&from), short(&to)),
                kind: FixKind::Lowercased,
                from: Some(from),
                to: Some(to),
            });
            *text = lower;
        }
    }
}

/// Pass 3: renames (an object's, before its children), then coercion and clamping.
fn repair(schema: &Value, value: &mut Value, pointer: &mut String, fixes: &mut Vec<Fix>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (name, property) in sorted(properties) {
                if !map.contains_key(name) {
                    let len = push_key(pointer, name);
                    rename_from_alias(map, properties, name, property, pointer, fixes);
                    pointer.truncate(len);
                }
            }
            for (name, property) in sorted(properties) {
                if let Some(child) = map.get_mut(name) {
                    let len = push_key(pointer, name);
                    repair(property, child, pointer, fixes);
                    pointer.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|s| s.is_object()) {
                for (index, child) in items.iter_mut().enumerate() {
                    let len = push_index(pointer, index);
                    repair(item, child, pointer, fixes);
                    pointer.truncate(len);
                }
            }
        }
        Value::String(_) => coerce(schema, value, pointer, fixes),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    clamp(schema, value, pointer, fixes);
}

/// Moves the first alias of `name` present in `map` to `name` (which must be missing);
/// `pointer` already points at `name`. An alias that is itself a declared property is left
/// alone: it belongs to that property.
fn rename_from_alias(
    map: &mut Map<String, Value>,
    properties: &Map<String, Value>,
    name: &str,
    property: &Value,
    pointer: &str,
    fixes: &mut Vec<Fix>,
) -> bool {
    let old = aliases(property)
        .find(|alias| !properties.contains_key(*alias) && map.contains_key(*alias));
    let Some((old, moved)) = old.and_then(|old| map.remove_entry(old)) else {
        return false;
    };
    fixes.push(Fix {
        pointer: pointer.to_owned(),
        kind: FixKind::Renamed,
        message: format!("renamed `{old}` to `{name}`"),
        from: Some(Value::String(old)),
        to: Some(Value::String(name.to_owned())),
    });
    map.insert(name.to_owned(), moved);
    true
}

/// A string holding a number or boolean, where the schema's `type` wants that and not a
/// string. Only clean values convert: the whole string, less surrounding whitespace, must be
/// a JSON number, or `true`/`false` in any case.
fn coerce(schema: &Map<String, Value>, value: &mut Value, pointer: &str, fixes: &mut Vec<Fix>) {
    let Value::String(text) = &*value else {
        return;
    };
    let types = types(schema);
    if types.is_empty() || types.contains(&"string") {
        return;
    }
    let text = text.trim();
    let wants = |name| types.contains(&name);
    let number = || match serde_json::from_str::<Value>(text) {
        Ok(Value::Number(number)) => Some(number),
        _ => None,
    };
    // An integer type takes only integral numbers; "number" takes any; then booleans.
    let mut coerced = None;
    if wants("integer") {
        coerced = number().and_then(as_integer);
    }
    if coerced.is_none() && wants("number") {
        coerced = number().map(Value::Number);
    }
    if coerced.is_none() && wants("boolean") {
        coerced = as_boolean(text);
    }
    if let Some(coerced) = coerced {
        let from = std::mem::replace(value, coerced.clone());
        fixes.push(Fix {
            pointer: pointer.to_owned(),
            message: format!("converted the string {} to {coerced}", short(&from)),
            kind: FixKind::Coerced,
            from: Some(from),
            to: Some(coerced),
        });
    }
}

/// An integral number as an integer value (`7.0` → `7`); `None` for `7.5`.
fn as_integer(number: Number) -> Option<Value> {
    if number.is_i64() || number.is_u64() {
        return Some(Value::Number(number));
    }
    let float = number.as_f64()?;
    // 2^63: beyond it the float cannot be an i64, and the cast would saturate.
    let in_range = float.abs() < 9_223_372_036_854_775_808.0;
    if float.fract() != 0.0 || !in_range {
        return None;
    }
    // Integral and in range, checked just above, so the cast is exact.
    Some(Value::from(float as i64))
}

fn as_boolean(text: &str) -> Option<Value> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// Moves a number below `minimum` or above `maximum` to that bound (`x-aurum-clamp`).
fn clamp(schema: &Map<String, Value>, value: &mut Value, pointer: &str, fixes: &mut Vec<Fix>) {
    if !flag(schema, "x-aurum-clamp") {
        return;
    }
    let Some(current) = value.as_f64() else {
        return;
    };
    let bound = |keyword: &str| schema.get(keyword).filter(|b| b.is_number());
    let (bound, word) = match (bound("minimum"), bound("maximum")) {
        (Some(min), _) if min.as_f64().is_some_and(|min| current < min) => (min, "minimum"),
        (_, Some(max)) if max.as_f64().is_some_and(|max| current > max) => (max, "maximum"),
        _ => return,
    };
    let from = std::mem::replace(value, bound.clone());
    fixes.push(Fix {
        pointer: pointer.to_owned(),
        message: format!("clamped {from} to the {word} {bound}"),
        kind: FixKind::Clamped,
        from: Some(from),
        to: Some(bound.clone()),
    });
}

fn flag(schema: &Map<String, Value>, keyword: &str) -> bool {
    schema.get(keyword) == Some(&Value::Bool(true))
}

/// The names in the schema's `type`, whether a string or an array.
fn types(schema: &Map<String, Value>) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn required(schema: &Map<String, Value>) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn aliases(property: &Value) -> impl Iterator<Item = &str> {
    property
        .get("x-aurum-aliases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Properties by name, so fixes come in the same order whatever the map's own order.
fn sorted(properties: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = properties.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Appends a key to a JSON pointer (escaping `~` and `/`); returns the length to truncate to.
fn push_key(pointer: &mut String, key: &str) -> usize {
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    len
}

fn push_index(pointer: &mut String, index: usize) -> usize {
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(&index.to_string());
    len
}

/// A value as JSON, cut to a readable length for messages.
fn short(value: &Value) -> String {
    const LIMIT: usize = 40;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Keywords whose value maps names to subschemas (the names are not keywords).
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Checks the form of every `x-aurum-` keyword in a schema, wherever it appears. Instance
/// data under `enum`, `const`, `default` and `examples` is not schema and is skipped.
fn lint_extensions(schema: &Value, pointer: &mut String, problems: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (keyword, value) in map {
                let len = push_key(pointer, keyword);
                if let Some(problem) = lint_keyword(map, keyword, value) {
                    problems.push(format!("{pointer} {problem}"));
                } else if SCHEMA_MAPS.contains(&keyword.as_str()) {
                    for (name, subschema) in value.as_object().into_iter().flatten() {
                        let len = push_key(pointer, name);
                        lint_extensions(subschema, pointer, problems);
                        pointer.truncate(len);
                    }
                } else if !["enum", "const", "default", "examples"].contains(&keyword.as_str()) {
                    lint_extensions(value, pointer, problems);
                }
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = push_index(pointer, index);
                lint_extensions(item, pointer, problems);
                pointer.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// What is wrong with one keyword of a schema object, if it is an `x-aurum-` one.
fn lint_keyword(schema: &Map<String, Value>, keyword: &str, value: &Value) -> Option<&'static str> {
    match keyword {
        "x-aurum-trim" | "x-aurum-lowercase" | "x-aurum-clamp" if !value.is_boolean() => {
            Some("must be true or false")
        }
        "x-aurum-clamp"
            if value == &Value::Bool(true)
                && !schema.contains_key("minimum")
                && !schema.contains_key("maximum") =>
        {
            Some("needs a minimum or a maximum beside it")
        }
        "x-aurum-aliases"
            if !value
                .as_array()
                .is_some_and(|names| names.iter().all(Value::is_string)) =>
        {
            Some("must be an array of strings")
        }
        "x-aurum-trim" | "x-aurum-lowercase" | "x-aurum-clamp" | "x-aurum-aliases" => None,
        unknown if unknown.starts_with("x-aurum-") => Some("is not a known extension keyword"),
        _ => None,
    }
}
