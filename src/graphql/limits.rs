//! Limits checked on a parsed document before validation: how many fields it expands to
//! (fragments counted once each, so a document whose fragments fan out exponentially is
//! refused in microseconds instead of being walked) and how many aliases it uses.

use std::collections::HashMap;

use async_graphql::{
    Positioned, ServerError,
    parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet},
};

/// Code of documents that expand to too many fields.
pub const QUERY_TOO_LARGE: &str = "QUERY_TOO_LARGE";
/// Code of documents with too many aliases.
pub const TOO_MANY_ALIASES: &str = "TOO_MANY_ALIASES";

/// The document limits.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Fields after expanding every fragment spread.
    pub max_selections: u64,
    pub max_aliases: u64,
}

struct Counter<'a> {
    fragments: &'a HashMap<async_graphql::Name, Positioned<FragmentDefinition>>,
    memo: HashMap<&'a str, u64>,
    in_progress: Vec<&'a str>,
    aliases: u64,
}

impl<'a> Counter<'a> {
    fn set(&mut self, set: &'a Positioned<SelectionSet>) -> u64 {
        let mut total: u64 = 0;
        for item in &set.node.items {
            let n = match &item.node {
                Selection::Field(f) => {
                    if f.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    1 + self.set(&f.node.selection_set)
                }
                Selection::InlineFragment(i) => self.set(&i.node.selection_set),
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())
                }
            };
            total = total.saturating_add(n);
        }
        total
    }

    fn fragment(&mut self, name: &'a str) -> u64 {
        if let Some(n) = self.memo.get(name) {
            return *n;
        }
        // A cycle is the validator's to report; count it as nothing here.
        if self.in_progress.contains(&name) {
            return 0;
        }
        let Some(def) = self
            .fragments
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
        else {
            return 0;
        };
        self.in_progress.push(name);
        let n = self.set(&def.node.selection_set);
        self.in_progress.pop();
        self.memo.insert(name, n);
        n
    }
}

fn refused(code: &'static str, message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    err
}

/// Checks `doc` against `limits`; returns how many fields it expands to (its cost).
pub fn check(doc: &ExecutableDocument, limits: DocumentLimits) -> Result<u64, ServerError> {
    let mut counter = Counter {
        fragments: &doc.fragments,
        memo: HashMap::new(),
        in_progress: Vec::new(),
        aliases: 0,
    };
    let mut selections: u64 = 0;
    for (_, op) in doc.operations.iter() {
        selections = selections.saturating_add(counter.set(&op.node.selection_set));
    }
    if selections > limits.max_selections {
        return Err(refused(
            QUERY_TOO_LARGE,
            format!(
                "the document expands to {selections} fields; at most {} are allowed",
                limits.max_selections
            ),
        ));
    }
    // Aliases inside fragments count once per fragment definition, in document order.
    if counter.aliases > limits.max_aliases {
        return Err(refused(
            TOO_MANY_ALIASES,
            format!(
                "the document uses {} aliases; at most {} are allowed",
                counter.aliases, limits.max_aliases
            ),
        ));
    }
    Ok(selections)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DocumentLimits = DocumentLimits {
        max_selections: 10_000,
        max_aliases: 64,
    };

    fn doc(q: &str) -> ExecutableDocument {
        match async_graphql::parser::parse_query(q) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn exponential_fragments_are_refused_fast() {
        // f0 spreads f1 twice, f1 spreads f2 twice, … : 2^24 fields from a tiny document.
        let mut q = String::from("query { ...f0 }\n");
        for i in 0..24 {
            q.push_str(&format!(
                "fragment f{i} on QueryRoot {{ ...f{} ...f{} }}\n",
                i + 1,
                i + 1
            ));
        }
        q.push_str("fragment f24 on QueryRoot { __typename }\n");
        let d = doc(&q);
        let started = std::time::Instant::now();
        let err = check(&d, LIMITS).err().map(|e| e.message);
        assert!(err.is_some_and(|m| m.contains("16777216")));
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn aliases_are_counted() {
        let many: String = (0..65).map(|i| format!("a{i}: __typename ")).collect();
        let err = check(&doc(&format!("{{ {many} }}")), LIMITS).err();
        assert!(err.is_some());
        assert_eq!(
            check(&doc("{ a: __typename b: __typename }"), LIMITS).ok(),
            Some(2)
        );
    }
}
