//! Limits checked on a parsed document before validation: how many fields it expands to
//! (fragments counted once each, so a document whose fragments fan out exponentially is
//! refused in microseconds instead of being walked) and how many aliases it uses. Also the
//! cost a request is charged: the same count with every connection's items weighted by its
//! page size.

use std::collections::HashMap;

use async_graphql::{
    Positioned, ServerError, Variables,
    parser::types::{ExecutableDocument, Field, FragmentDefinition, Selection, SelectionSet},
};
use async_graphql_value::{ConstValue, Value};

use crate::error::{AppError, QueryLimit};

/// The document limits.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Fields after expanding every fragment spread.
    pub max_selections: u64,
    pub max_aliases: u64,
    /// Page sizes that weight connections in the charged cost.
    pub pages: PageSizes,
}

/// A connection's page size when `first` is absent, and the most a page can hold.
#[derive(Debug, Clone, Copy)]
pub struct PageSizes {
    pub default: u64,
    pub max: u64,
}

/// The cost a request is charged: each field counts 1, and the fields under a connection
/// (a field with a `first` argument, or one selecting `edges` or `nodes`) count once per item
/// of the page it can return — `first` from the document or the request's variables,
/// clamped to the maximum page, or the default page size. Fragments are weighed once each.
pub fn charge(doc: &ExecutableDocument, variables: &Variables, pages: PageSizes) -> u64 {
    Counter::new(doc, Some((variables, pages))).document(doc)
}

/// Walks a document counting fields (and aliases); with `weigh`, the fields under a
/// connection count once per item of its page.
struct Counter<'a> {
    fragments: &'a HashMap<async_graphql::Name, Positioned<FragmentDefinition>>,
    memo: HashMap<&'a str, u64>,
    in_progress: Vec<&'a str>,
    aliases: u64,
    weigh: Option<(&'a Variables, PageSizes)>,
}

impl<'a> Counter<'a> {
    fn new(doc: &'a ExecutableDocument, weigh: Option<(&'a Variables, PageSizes)>) -> Self {
        Self {
            fragments: &doc.fragments,
            memo: HashMap::new(),
            in_progress: Vec::new(),
            aliases: 0,
            weigh,
        }
    }

    /// Every operation of `doc`.
    fn document(&mut self, doc: &'a ExecutableDocument) -> u64 {
        doc.operations.iter().fold(0u64, |total, (_, op)| {
            total.saturating_add(self.set(&op.node.selection_set))
        })
    }

    fn set(&mut self, set: &'a Positioned<SelectionSet>) -> u64 {
        let mut total: u64 = 0;
        for item in &set.node.items {
            let n = match &item.node {
                Selection::Field(f) => {
                    if f.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    let items = self.page(&f.node);
                    items
                        .saturating_mul(self.set(&f.node.selection_set))
                        .saturating_add(1)
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

    /// How many items `field` can return when weighing: 1 unless it is a connection.
    fn page(&self, field: &Field) -> u64 {
        let Some((variables, pages)) = self.weigh else {
            return 1;
        };
        let first = field
            .arguments
            .iter()
            .find(|(name, _)| name.node.as_str() == "first")
            .map(|(_, value)| &value.node);
        let lists = field.selection_set.node.items.iter().any(|item| {
            matches!(&item.node, Selection::Field(f)
                if matches!(f.node.name.node.as_str(), "edges" | "nodes"))
        });
        if first.is_none() && !lists {
            return 1;
        }
        let asked = match first {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::Variable(name)) => match variables.get(name) {
                Some(ConstValue::Number(n)) => n.as_u64(),
                _ => None,
            },
            _ => None,
        };
        asked.unwrap_or(pages.default).clamp(1, pages.max.max(1))
    }
}

fn refused(limit: QueryLimit, message: String) -> ServerError {
    AppError::QueryLimit { limit, message }.into_server_error()
}

/// Checks `doc` against `limits`; returns how many fields it expands to (its cost).
pub fn check(doc: &ExecutableDocument, limits: DocumentLimits) -> Result<u64, ServerError> {
    let mut counter = Counter::new(doc, None);
    let selections = counter.document(doc);
    if selections > limits.max_selections {
        return Err(refused(
            QueryLimit::Size,
            format!(
                "the document expands to {selections} fields; at most {} are allowed",
                limits.max_selections
            ),
        ));
    }
    // Aliases inside fragments count once per fragment definition, in document order.
    if counter.aliases > limits.max_aliases {
        return Err(refused(
            QueryLimit::Aliases,
            format!(
                "the document uses {} aliases; at most {} are allowed",
                counter.aliases, limits.max_aliases
            ),
        ));
    }
    Ok(selections)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const PAGES: PageSizes = PageSizes {
        default: 20,
        max: 100,
    };
    const LIMITS: DocumentLimits = DocumentLimits {
        max_selections: 10_000,
        max_aliases: 64,
        pages: PAGES,
    };

    fn vars(v: serde_json::Value) -> Variables {
        Variables::from_json(v)
    }

    #[test]
    fn connections_are_charged_per_item_of_their_page() {
        let none = vars(serde_json::json!({}));
        // No connection: one per field.
        assert_eq!(charge(&doc("{ me { id username } }"), &none, PAGES), 3);
        // `first` literal: 1 (tasks) + 5 × (edges + node + id + title).
        let q = "{ tasks(first: 5) { edges { node { id title } } } }";
        assert_eq!(charge(&doc(q), &none, PAGES), 1 + 5 * 4);
        // From a variable, clamped to the largest page; absent = the default page.
        let q = "query($n: Int) { tasks(first: $n) { nodes { id } } }";
        assert_eq!(
            charge(&doc(q), &vars(serde_json::json!({ "n": 7 })), PAGES),
            1 + 7 * 2
        );
        assert_eq!(
            charge(&doc(q), &vars(serde_json::json!({ "n": 100_000 })), PAGES),
            1 + 100 * 2
        );
        assert_eq!(charge(&doc(q), &none, PAGES), 1 + 20 * 2);
        // A connection without `first` (it selects edges): the default page.
        let q = "{ budgets { totalCount edges { node { id } } } }";
        assert_eq!(charge(&doc(q), &none, PAGES), 1 + 20 * 4);
        // Nested pages multiply; fragments are weighed where they are spread.
        let q = "{ tasks(first: 10) { edges { node { ...T } } } } \
                 fragment T on Task { escalations(first: 3) { edges { node { id } } } }";
        assert_eq!(charge(&doc(q), &none, PAGES), 1 + 10 * (2 + (1 + 3 * 3)));
    }

    /// A parsed document (the GraphQL module's tests share it).
    pub(in crate::graphql) fn doc(q: &str) -> ExecutableDocument {
        match async_graphql::parser::parse_query(q) {
            Ok(d) => d,
            Err(e) => panic!("{q}: {e}"),
        }
    }

    #[test]
    fn exponential_fragments_are_refused_fast() {
        // f0 spreads f1 twice, f1 spreads f2 twice, … : 2^24 fields from a tiny document.
        let mut q = String::from("query { ...f0 }\n");
        for i in 0..24 {
            q.push_str(&format!(
                "fragment f{i} on Query {{ ...f{} ...f{} }}\n",
                i + 1,
                i + 1
            ));
        }
        q.push_str("fragment f24 on Query { __typename }\n");
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
