//! Extraction on a corpus of model outputs written like real ones
//! (`tests/fixtures/llm/extraction_corpus.json`), on random values hidden in random prose,
//! on arbitrary strings, and on pathological inputs that must stay within the work bound.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::extract::*;

const CORPUS: &str = include_str!("../../tests/fixtures/llm/extraction_corpus.json");

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Fence => "FENCE",
        Source::Object => "OBJECT",
        Source::Array => "ARRAY",
    }
}

fn error_name(error: NotFound) -> &'static str {
    match error {
        NotFound::Empty => "EMPTY",
        NotFound::Truncated { .. } => "TRUNCATED",
        NotFound::NoJson => "NO_JSON",
    }
}

/// What every successful extraction must satisfy, whatever the input.
fn assert_span_parses(text: &str, found: &Extracted) {
    assert!(found.span.start <= found.span.end && found.span.end <= text.len());
    let slice = text
        .get(found.span.clone())
        .expect("span on character boundaries");
    let reparsed: Value = serde_json::from_str(slice).expect("span parses");
    assert_eq!(reparsed, found.value);
    assert_eq!(slice, slice.trim_matches([' ', '\t', '\n', '\r']));
}

/// One corpus case against the extractor; `Err` says how it went wrong.
fn run_case(case: &Value) -> Result<(), String> {
    let text = case["text"].as_str().ok_or("no text")?;
    let expected = &case["expected"];
    match (extract(text), expected) {
        (Ok(found), Value::Null) => Err(format!("expected nothing, got {found:?}")),
        (Err(error), Value::Null) => match case.get("error").and_then(Value::as_str) {
            Some(want) if want != error_name(error) => {
                Err(format!("expected {want}, got {error:?}"))
            }
            _ => Ok(()),
        },
        (Err(error), _) => Err(format!("expected {expected}, got {error:?}")),
        (Ok(found), _) => {
            let source = source_name(found.source);
            if &found.value != expected || case["source"] != source {
                return Err(format!(
                    "expected {expected} from {}, got {} from {source}",
                    case["source"], found.value
                ));
            }
            let slice = text
                .get(found.span.clone())
                .ok_or("span not on boundaries")?;
            match serde_json::from_str::<Value>(slice) {
                Ok(reparsed) if &reparsed == expected => Ok(()),
                _ => Err(format!("span {:?} is {slice:?}", found.span)),
            }
        }
    }
}

#[test]
fn the_corpus_extracts_as_recorded() {
    let corpus: Vec<Value> = serde_json::from_str(CORPUS).expect("corpus is JSON");
    assert!(corpus.len() >= 40, "only {} cases", corpus.len());
    let failures: Vec<String> = corpus
        .iter()
        .filter_map(|case| {
            run_case(case)
                .err()
                .map(|why| format!("{}: {why}", case["name"]))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_checker_notices_a_wrong_answer() {
    // Guards the test above against passing vacuously.
    let case = json!({"name": "x", "text": "{\"a\": 1}", "expected": {"a": 2}, "source": "OBJECT"});
    assert!(run_case(&case).is_err());
    let case = json!({"name": "x", "text": "{\"a\": 1}", "expected": {"a": 1}, "source": "FENCE"});
    assert!(run_case(&case).is_err());
    let case =
        json!({"name": "x", "text": "", "expected": null, "source": null, "error": "NO_JSON"});
    assert!(run_case(&case).is_err());
}

#[test]
fn spans_and_reasons_are_exact() {
    let text = "\u{feff}Note {x}: {\"a\": [1, {\"b\": \"}\"}]} trailing {y}";
    let found = extract(text).unwrap();
    assert_eq!(&text[found.span.clone()], "{\"a\": [1, {\"b\": \"}\"}]}");
    assert_eq!(found.source, Source::Object);

    let text = "Result:\n```json\n  {\"a\": 1}  \n```";
    let found = extract(text).unwrap();
    assert_eq!(&text[found.span], "{\"a\": 1}");

    let text = "ok then {\"a\": [1, 2";
    assert_eq!(extract(text), Err(NotFound::Truncated { at: 8 }));
    assert_eq!(extract("\u{feff}"), Err(NotFound::Empty));
}

#[test]
fn the_failed_parse_bound_is_documented_behaviour() {
    // Placeholders cost no parse attempt, however many there are.
    let text = format!("{}{{\"ok\": true}}", "{name} [see] ".repeat(10_000));
    assert_eq!(extract(&text).unwrap().value, json!({"ok": true}));
    // Balanced, plausible, broken candidates do; past the bound the search stops.
    let text = format!(
        "{}{{\"ok\": true}}",
        "{\"a\": 1,} ".repeat(MAX_FAILED_PARSES + 1)
    );
    assert_eq!(extract(&text), Err(NotFound::NoJson));
    let text = format!(
        "{}{{\"ok\": true}}",
        "{\"a\": 1,} ".repeat(MAX_FAILED_PARSES - 1)
    );
    assert_eq!(extract(&text).unwrap().value, json!({"ok": true}));
}

#[test]
fn pathological_inputs_return_quickly() {
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let inputs = [
        "{".repeat(50_000),
        "[".repeat(50_000),
        "{\"".repeat(25_000),
        "[\"".repeat(25_000),
        "{\"a\":".repeat(20_000),
        "[{\"a\":[".repeat(15_000),
        "{\"\\\"{".repeat(20_000),
        "{\"a\": 1,} ".repeat(10_000),
        "[1,] ".repeat(20_000),
        "```json\n{\n".repeat(10_000),
        deep,
    ];
    for input in &inputs {
        let started = Instant::now();
        let result = extract(input);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{took:?} for {:?}…: {result:?}",
            &input[..12]
        );
        assert!(result.is_err(), "{:?}… gave {result:?}", &input[..12]);
    }
}

/// Characters that stress the scanner, plus any character at all.
fn tricky_char() -> impl Strategy<Value = char> {
    let tricky = prop::sample::select(vec![
        '{', '}', '[', ']', '"', '\\', '`', '~', ':', ',', '\n', '\r', '\t', ' ', '\u{feff}', 'é',
        '中', '🚀', '\u{301}', '\u{202e}', '\u{0}', 'n', '1', '-',
    ]);
    prop_oneof![3 => tricky, 1 => any::<char>()]
}

fn json_string() -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..10).prop_map(|chars| chars.into_iter().collect())
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Quarters print and parse back exactly, so equality is a fair test.
        (-4000i32..4000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        json_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(json_string(), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An object or an array at the top, as a model's answer is.
fn json_document() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(json_value(), 0..5).prop_map(Value::Array),
        prop::collection::btree_map(json_string(), json_value(), 0..5)
            .prop_map(|map| Value::Object(map.into_iter().collect())),
    ]
}

/// Prose: anything but brackets and fence characters, which would make it JSON or markdown.
fn prose() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => prop::sample::select(vec!['a', ' ', '.', '"', '\\', '\n', 'é', '中', '🚀', ':', '1']),
        1 => any::<char>(),
    ]
    .prop_filter("no delimiters", |c| !"{}[]`~".contains(*c));
    prop::collection::vec(char, 0..40).prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(text in any::<String>()) {
        if let Ok(found) = extract(&text) {
            assert_span_parses(&text, &found);
        }
    }

    #[test]
    fn never_panics_on_bracket_soup(chars in prop::collection::vec(tricky_char(), 0..200)) {
        let text: String = chars.into_iter().collect();
        if let Ok(found) = extract(&text) {
            assert_span_parses(&text, &found);
        }
    }

    #[test]
    fn finds_any_document_in_prose(
        value in json_document(),
        before in prose(),
        after in prose(),
        fenced in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        let json = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let (text, offset) = if fenced {
            let head = format!("{before}\n```json\n");
            (format!("{head}{json}\n```\n{after}"), head.len())
        } else {
            (format!("{before}{json}{after}"), before.len())
        };
        let found = extract(&text).unwrap();
        prop_assert_eq!(&found.value, &value);
        // The exact bytes of the serialised document, not a copy that happens to parse equal.
        prop_assert_eq!(found.span.clone(), offset..offset + json.len());
        let expected_source = match (fenced, &value) {
            (true, _) => Source::Fence,
            (false, Value::Object(_)) => Source::Object,
            (false, _) => Source::Array,
        };
        prop_assert_eq!(found.source, expected_source);
        assert_span_parses(&text, &found);
    }
}
