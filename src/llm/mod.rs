//! LLM output validation: model text in, a validated value out, never by rewriting the
//! text. `extract` finds the JSON in the text (a fenced json block, else the first balanced
//! object, else an array) and parses it where it stands; `check` validates it against a JSON
//! Schema (the `jsonschema` crate), applies the normalisations the schema documents and, when
//! validation fails, the repairs it documents (coercions, defaults, renames, clamps), then
//! validates again. The built-in kinds are the schema files in `schemas/llm/`; administrators
//! register more (`service`). `graphql` holds the thin resolvers.

pub mod check;
pub mod extract;
pub mod graphql;
pub mod service;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod extract_tests;
