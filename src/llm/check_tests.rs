//! The built-in schemas, normalisation, each documented repair, what stays invalid, and an
//! admin's own schema with its own extension keywords.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::check::*;

fn kind(name: &str) -> &'static Schema {
    builtin(name).unwrap_or_else(|| panic!("{name} does not compile"))
}

fn valid_synthesis() -> Value {
    json!({
        "synthesis_reasoning": "Two agents hit the same flaky test; fix it before anything else.",
        "action_plan": [
            {"priority": 1, "type": "fix", "issue": "Flaky billing integration test", "agent": "coder"},
            {"priority": 50, "type": "test", "issue": "Add a regression test", "agent": "tester", "estimate": "2h"}
        ],
        "model": "  extra fields are kept as they are  "
    })
}

fn valid_pattern() -> Value {
    json!([
        {"pattern_type": "skill_gap", "root_cause": "No experience with SQL migrations",
         "suggested_fix": "Pair with the database agent", "agents_involved": ["coder"], "confidence": 0.7},
        {"pattern_type": "process_issue", "root_cause": "Reviews start late",
         "suggested_fix": "Review within the hour", "agents_involved": [], "confidence": 0}
    ])
}

fn valid_consensus() -> Value {
    json!({
        "decision": "conditional",
        "confidence": 0.6,
        "reasoning": "Sound change; café ☕ and 数据 stay byte-for-byte.",
        "concerns": ["The migration is not reversible"]
    })
}

fn valid(name: &str) -> Value {
    match name {
        "SYNTHESIS" => valid_synthesis(),
        "PATTERN" => valid_pattern(),
        _ => valid_consensus(),
    }
}

/// The fixes as (kind, pointer) pairs, for compact assertions.
fn summary(checked: &Checked) -> Vec<(FixKind, &str)> {
    checked
        .fixes
        .iter()
        .map(|fix| (fix.kind, fix.pointer.as_str()))
        .collect()
}

#[test]
fn each_builtin_compiles() {
    let files = [
        include_str!("../../schemas/llm/synthesis.json"),
        include_str!("../../schemas/llm/pattern.json"),
        include_str!("../../schemas/llm/consensus.json"),
    ];
    for (name, text) in BUILTIN.into_iter().zip(files) {
        // Through `load` first, so a broken file reports why rather than just `None`.
        if let Err(why) = load(text) {
            panic!("{name}: {why}");
        }
        let schema = kind(name);
        let id = schema.raw()["$id"].as_str().unwrap();
        assert_eq!(
            id,
            format!("https://aurum.dev/schemas/llm/{}.json", name.to_lowercase())
        );
        assert!(schema.raw()["description"].is_string());
    }
    assert_eq!(BUILTIN, ["SYNTHESIS", "PATTERN", "CONSENSUS"]);
    assert!(builtin("synthesis").is_none());
    assert!(builtin("OTHER").is_none());
}

#[test]
fn valid_documents_pass_untouched() {
    for name in BUILTIN {
        let checked = check(kind(name), valid(name));
        assert!(checked.valid, "{name}: {:?}", checked.errors);
        assert_eq!(checked.value, valid(name), "{name}");
        assert!(checked.fixes.is_empty(), "{name}: {:?}", checked.fixes);
        assert!(!checked.repaired);
        assert!(kind(name).validate(&valid(name)).is_empty());
    }
}

#[test]
fn missing_optional_fields_get_their_defaults() {
    let checked = check(
        kind("PATTERN"),
        json!([{"pattern_type": "agent_conflict", "root_cause": "Both edit the same file",
                "suggested_fix": "Lock the file"}]),
    );
    assert!(checked.valid, "{:?}", checked.errors);
    assert!(!checked.repaired);
    assert_eq!(checked.value[0]["agents_involved"], json!([]));
    assert_eq!(checked.value[0]["confidence"], json!(0.5));
    assert_eq!(
        summary(&checked),
        [
            (FixKind::Defaulted, "/0/agents_involved"),
            (FixKind::Defaulted, "/0/confidence")
        ]
    );
    assert_eq!(checked.fixes[1].from, None);
    assert_eq!(checked.fixes[1].to, Some(json!(0.5)));
    assert_eq!(
        checked.fixes[1].message,
        "added missing `confidence` with its default 0.5"
    );

    let mut consensus = valid_consensus();
    consensus.as_object_mut().unwrap().remove("concerns");
    let checked = check(kind("CONSENSUS"), consensus);
    assert!(checked.valid);
    let mut expected = valid_consensus();
    expected["concerns"] = json!([]);
    assert_eq!(checked.value, expected);
    assert_eq!(summary(&checked), [(FixKind::Defaulted, "/concerns")]);
}

#[test]
fn strings_are_trimmed_and_lowercased_where_the_schema_says() {
    let mut doc = valid_synthesis();
    doc["synthesis_reasoning"] = json!("\n  Two agents hit the same flaky test.  \t");
    doc["action_plan"][0]["type"] = json!("FIX");
    doc["action_plan"][1]["type"] = json!(" Test ");
    doc["action_plan"][1]["agent"] = json!(" tester ");
    let checked = check(kind("SYNTHESIS"), doc);
    assert!(checked.valid, "{:?}", checked.errors);
    assert!(!checked.repaired, "normalisation is not repair");
    assert_eq!(
        checked.value["synthesis_reasoning"],
        "Two agents hit the same flaky test."
    );
    assert_eq!(checked.value["action_plan"][0]["type"], "fix");
    assert_eq!(checked.value["action_plan"][1]["type"], "test");
    assert_eq!(checked.value["action_plan"][1]["agent"], "tester");
    assert_eq!(
        checked.value["model"],
        valid_synthesis()["model"],
        "not asked to trim"
    );
    assert_eq!(
        summary(&checked),
        [
            (FixKind::Lowercased, "/action_plan/0/type"),
            (FixKind::Trimmed, "/action_plan/1/agent"),
            (FixKind::Trimmed, "/action_plan/1/type"),
            (FixKind::Lowercased, "/action_plan/1/type"),
            (FixKind::Trimmed, "/synthesis_reasoning"),
        ]
    );
    let lowered = &checked.fixes[0];
    assert_eq!(
        (lowered.from.clone(), lowered.to.clone()),
        (Some(json!("FIX")), Some(json!("fix")))
    );
    assert_eq!(lowered.message, "lowercased \"FIX\" to \"fix\"");
}

#[test]
fn numbers_written_as_strings_are_coerced() {
    for (written, expected) in [
        ("7", json!(7)),
        (" 42 ", json!(42)),
        ("7.0", json!(7)),
        ("1e1", json!(10)),
    ] {
        let mut doc = valid_synthesis();
        doc["action_plan"][0]["priority"] = json!(written);
        let checked = check(kind("SYNTHESIS"), doc);
        assert!(checked.valid, "{written}: {:?}", checked.errors);
        assert!(checked.repaired);
        assert_eq!(
            checked.value["action_plan"][0]["priority"], expected,
            "{written}"
        );
        assert_eq!(
            summary(&checked),
            [(FixKind::Coerced, "/action_plan/0/priority")]
        );
        assert_eq!(checked.fixes[0].from, Some(json!(written)));
    }
    let mut doc = valid_consensus();
    doc["confidence"] = json!(" 0.8 ");
    let checked = check(kind("CONSENSUS"), doc);
    assert!(checked.valid && checked.repaired);
    assert_eq!(checked.value["confidence"], json!(0.8));
    assert_eq!(
        checked.fixes[0].message,
        "converted the string \" 0.8 \" to 0.8"
    );
}

#[test]
fn unclean_numbers_are_left_alone_and_reported() {
    for written in ["7.5", "high", "7 or 8", "0x10", "+3", "", "1e999", "NaN"] {
        let mut doc = valid_synthesis();
        doc["action_plan"][0]["priority"] = json!(written);
        let checked = check(kind("SYNTHESIS"), doc);
        assert!(!checked.valid, "{written}");
        assert!(!checked.repaired, "{written}: {:?}", checked.fixes);
        assert_eq!(checked.value["action_plan"][0]["priority"], json!(written));
        assert!(
            checked
                .errors
                .iter()
                .any(|e| e.pointer == "/action_plan/0/priority"),
            "{written}: {:?}",
            checked.errors
        );
    }
}

#[test]
fn priorities_are_clamped_into_range() {
    for (written, expected, fixes) in [
        (json!(150), json!(100), vec![FixKind::Clamped]),
        (json!(0), json!(1), vec![FixKind::Clamped]),
        (json!(-3), json!(1), vec![FixKind::Clamped]),
        (
            json!("150"),
            json!(100),
            vec![FixKind::Coerced, FixKind::Clamped],
        ),
    ] {
        let mut doc = valid_synthesis();
        doc["action_plan"][1]["priority"] = written.clone();
        let checked = check(kind("SYNTHESIS"), doc);
        assert!(checked.valid, "{written}: {:?}", checked.errors);
        assert!(checked.repaired);
        assert_eq!(checked.value["action_plan"][1]["priority"], expected);
        let kinds: Vec<_> = checked.fixes.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, fixes, "{written}");
        let last = checked.fixes.last().unwrap();
        assert_eq!(last.pointer, "/action_plan/1/priority");
        assert_eq!(last.to, Some(expected));
    }
    let mut doc = valid_synthesis();
    doc["action_plan"][0]["priority"] = json!(150);
    let clamped = check(kind("SYNTHESIS"), doc).fixes.remove(0);
    assert_eq!(clamped.message, "clamped 150 to the maximum 100");
}

#[test]
fn confidence_is_not_clamped() {
    let mut doc = valid_consensus();
    doc["confidence"] = json!(85);
    let checked = check(kind("CONSENSUS"), doc);
    assert!(!checked.valid && !checked.repaired);
    assert_eq!(checked.errors[0].pointer, "/confidence");
}

/// Every alias in the built-in schemas: (kind, object holding the property, property, alias).
const RENAMES: [(&str, &str, &str, &str); 16] = [
    ("SYNTHESIS", "", "synthesis_reasoning", "reasoning"),
    ("SYNTHESIS", "", "synthesis_reasoning", "synthesis"),
    ("SYNTHESIS", "", "action_plan", "actions"),
    ("SYNTHESIS", "", "action_plan", "plan"),
    ("SYNTHESIS", "/action_plan/0", "type", "action_type"),
    ("SYNTHESIS", "/action_plan/0", "type", "kind"),
    ("SYNTHESIS", "/action_plan/0", "issue", "description"),
    ("SYNTHESIS", "/action_plan/0", "agent", "assignee"),
    ("SYNTHESIS", "/action_plan/0", "agent", "agent_name"),
    ("PATTERN", "/0", "pattern_type", "type"),
    ("PATTERN", "/0", "root_cause", "cause"),
    ("PATTERN", "/0", "suggested_fix", "fix"),
    ("PATTERN", "/0", "suggested_fix", "suggestion"),
    ("PATTERN", "/0", "agents_involved", "agents"),
    ("CONSENSUS", "", "decision", "verdict"),
    ("CONSENSUS", "", "reasoning", "rationale"),
];

/// (property, alias) for every `x-aurum-aliases` under any `properties` of a schema.
fn aliases_in(schema: &Value, out: &mut BTreeSet<(String, String)>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "properties" {
                    for (name, property) in value.as_object().unwrap() {
                        for alias in property["x-aurum-aliases"].as_array().into_iter().flatten() {
                            out.insert((name.clone(), alias.as_str().unwrap().to_owned()));
                        }
                    }
                }
                aliases_in(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| aliases_in(item, out)),
        _ => {}
    }
}

#[test]
fn the_rename_table_covers_every_alias() {
    for name in BUILTIN {
        let mut in_schema = BTreeSet::new();
        aliases_in(kind(name).raw(), &mut in_schema);
        let in_table: BTreeSet<_> = RENAMES
            .iter()
            .filter(|row| row.0 == name)
            .map(|row| (row.2.to_owned(), row.3.to_owned()))
            .collect();
        assert_eq!(in_schema, in_table, "{name}");
    }
}

#[test]
fn each_old_name_is_renamed() {
    for (name, parent, property, alias) in RENAMES {
        let mut doc = valid(name);
        let object = doc.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        let moved = object.remove(property).unwrap();
        object.insert(alias.to_owned(), moved);
        let checked = check(kind(name), doc);
        let row = format!("{name} {alias} → {property}");
        assert!(checked.valid, "{row}: {:?}", checked.errors);
        assert_eq!(checked.value, valid(name), "{row}");
        let pointer = format!("{parent}/{property}");
        assert_eq!(
            summary(&checked),
            [(FixKind::Renamed, pointer.as_str())],
            "{row}"
        );
        let fix = &checked.fixes[0];
        assert_eq!(
            (fix.from.clone(), fix.to.clone()),
            (Some(json!(alias)), Some(json!(property)))
        );
        assert_eq!(fix.message, format!("renamed `{alias}` to `{property}`"));
        // Required properties are renamed by the repair; the one optional aliased property
        // during normalisation, so a valid document does not lose it to the default.
        assert_eq!(checked.repaired, property != "agents_involved", "{row}");
    }
}

#[test]
fn an_alias_never_overwrites_the_property() {
    let mut doc = valid_consensus();
    doc["verdict"] = json!("reject");
    doc["decision"] = json!("maybe");
    let checked = check(kind("CONSENSUS"), doc);
    assert!(!checked.valid);
    assert_eq!(checked.value["decision"], "maybe");
    assert_eq!(checked.value["verdict"], "reject");
    assert!(checked.fixes.is_empty());
}

#[test]
fn unfixable_outputs_stay_invalid_with_pointed_errors() {
    let mut doc = valid_synthesis();
    doc.as_object_mut().unwrap().remove("action_plan");
    let checked = check(kind("SYNTHESIS"), doc);
    assert!(!checked.valid && !checked.repaired);
    assert_eq!(checked.errors.len(), 1, "{:?}", checked.errors);
    assert_eq!(checked.errors[0].pointer, "");
    assert!(
        checked.errors[0].message.contains("action_plan"),
        "{:?}",
        checked.errors
    );

    let mut doc = valid_consensus();
    doc["decision"] = json!("Maybe");
    let checked = check(kind("CONSENSUS"), doc);
    assert!(!checked.valid && !checked.repaired);
    assert_eq!(
        checked.value["decision"], "maybe",
        "normalised all the same"
    );
    assert_eq!(checked.errors[0].pointer, "/decision");
    assert!(
        checked.errors[0].message.contains("maybe"),
        "{:?}",
        checked.errors
    );

    let mut doc = valid_consensus();
    doc["reasoning"] = json!("why ".repeat(600));
    let checked = check(kind("CONSENSUS"), doc);
    assert_eq!(checked.errors[0].pointer, "/reasoning");
    assert!(
        checked.errors[0].message.len() < 100,
        "{}",
        checked.errors[0].message
    );
    assert!(
        checked.errors[0].message.contains("2000"),
        "{}",
        checked.errors[0].message
    );

    let checked = check(kind("PATTERN"), json!({"pattern_type": "skill_gap"}));
    assert!(!checked.valid);
    assert_eq!(checked.errors[0].pointer, "");

    let mut doc = valid_synthesis();
    doc["action_plan"][1]["issue"] = json!("   x  ");
    let errors = kind("SYNTHESIS").validate(&doc);
    assert_eq!(
        errors.len(),
        0,
        "6 characters with the spaces: long enough before trimming"
    );
    let checked = check(kind("SYNTHESIS"), doc);
    assert!(!checked.valid, "but not after");
    assert_eq!(checked.errors[0].pointer, "/action_plan/1/issue");
}

#[test]
fn fixes_come_in_a_fixed_order() {
    let doc = json!({
        "reasoning": "  Short, but long enough reasoning.  ",
        "actions": [{"priority": "150", "type": " FIX ", "description": "Broken build on main",
                     "assignee": " coder "}]
    });
    let checked = check(kind("SYNTHESIS"), doc);
    assert!(checked.valid, "{:?}", checked.errors);
    assert!(checked.repaired);
    assert_eq!(
        summary(&checked),
        [
            (FixKind::Renamed, "/action_plan"),
            (FixKind::Renamed, "/synthesis_reasoning"),
            (FixKind::Renamed, "/action_plan/0/agent"),
            (FixKind::Renamed, "/action_plan/0/issue"),
            (FixKind::Coerced, "/action_plan/0/priority"),
            (FixKind::Clamped, "/action_plan/0/priority"),
            (FixKind::Trimmed, "/action_plan/0/agent"),
            (FixKind::Trimmed, "/action_plan/0/type"),
            (FixKind::Lowercased, "/action_plan/0/type"),
            (FixKind::Trimmed, "/synthesis_reasoning"),
        ]
    );
    assert_eq!(
        checked.value,
        json!({
            "synthesis_reasoning": "Short, but long enough reasoning.",
            "action_plan": [{"priority": 100, "type": "fix", "issue": "Broken build on main",
                             "agent": "coder"}]
        })
    );
}

fn triage() -> Schema {
    Schema::compile(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://aurum.dev/schemas/llm/triage.json",
        "type": "object",
        "required": ["severity", "label"],
        "properties": {
            "severity": {"type": "integer", "minimum": 1, "maximum": 5, "x-aurum-clamp": true,
                         "x-aurum-aliases": ["sev", "level"]},
            "label": {"type": "string", "enum": ["bug", "feature"], "x-aurum-trim": true,
                      "x-aurum-lowercase": true, "x-aurum-aliases": ["tag"]},
            "urgent": {"type": "boolean", "default": false},
            "owners": {"type": "array", "items": {"type": "string", "x-aurum-trim": true},
                       "default": []},
            "a/b~c": {"type": "string", "x-aurum-trim": true},
            "note": {"type": ["string", "null"]}
        }
    }))
    .unwrap()
}

#[test]
fn an_admin_schema_drives_everything() {
    let doc =
        json!({"sev": "9", "tag": " BUG ", "urgent": "TRUE", "a/b~c": " x ", "note": " as is "});
    let checked = check(&triage(), doc);
    assert!(checked.valid, "{:?}", checked.errors);
    assert!(checked.repaired);
    assert_eq!(
        checked.value,
        json!({"severity": 5, "label": "bug", "urgent": true, "owners": [], "a/b~c": "x",
               "note": " as is "})
    );
    assert_eq!(
        summary(&checked),
        [
            (FixKind::Trimmed, "/a~1b~0c"),
            (FixKind::Defaulted, "/owners"),
            (FixKind::Renamed, "/label"),
            (FixKind::Renamed, "/severity"),
            (FixKind::Coerced, "/severity"),
            (FixKind::Clamped, "/severity"),
            (FixKind::Coerced, "/urgent"),
            (FixKind::Trimmed, "/label"),
            (FixKind::Lowercased, "/label"),
        ]
    );
}

#[test]
fn booleans_written_as_strings_are_coerced() {
    for (written, expected) in [("true", true), ("FALSE", false), (" False ", false)] {
        let checked = check(
            &triage(),
            json!({"severity": 2, "label": "bug", "urgent": written, "owners": []}),
        );
        assert!(checked.valid, "{written}");
        assert_eq!(checked.value["urgent"], json!(expected));
        assert_eq!(summary(&checked), [(FixKind::Coerced, "/urgent")]);
    }
    let checked = check(
        &triage(),
        json!({"severity": 2, "label": "bug", "urgent": "yes", "owners": []}),
    );
    assert!(!checked.valid && !checked.repaired);
    assert_eq!(checked.errors[0].pointer, "/urgent");
}

#[test]
fn repair_does_not_see_through_refs() {
    let schema = Schema::compile(json!({
        "$defs": {"n": {"type": "integer"}},
        "type": "object",
        "properties": {"n": {"$ref": "#/$defs/n"}}
    }))
    .unwrap();
    let checked = check(&schema, json!({"n": "5"}));
    assert!(!checked.valid && !checked.repaired);
    assert_eq!(checked.errors[0].pointer, "/n");
    assert!(
        check(&schema, json!({"n": 5})).valid,
        "validation does follow the ref"
    );
}

#[test]
fn invalid_schemas_are_rejected_with_a_reason() {
    for (raw, says) in [
        (json!({"type": 12}), "invalid schema"),
        (
            json!({"$ref": "https://example.com/elsewhere.json"}),
            "invalid schema",
        ),
        (
            json!({"properties": {"a": {"x-aurum-aliases": "old"}}}),
            "/properties/a/x-aurum-aliases",
        ),
        (
            json!({"items": {"x-aurum-trimm": true}}),
            "not a known extension keyword",
        ),
        (
            json!({"type": "integer", "x-aurum-clamp": true}),
            "needs a minimum or a maximum",
        ),
        (
            json!({"type": "string", "x-aurum-lowercase": "yes"}),
            "must be true or false",
        ),
    ] {
        let error = Schema::compile(raw.clone()).expect_err(&raw.to_string());
        assert!(error.contains(says), "{raw}: {error}");
    }
    // Instance data and property names are not mistaken for extension keywords.
    let names = json!({"properties": {"x-aurum-trim": {"type": "string"}},
                       "default": {"x-aurum-anything": 1}});
    Schema::compile(names).unwrap();
}

fn casing(word: &'static str) -> impl Strategy<Value = String> {
    (any::<u32>(), "[ \t\n]{0,2}", "[ \t\n]{0,2}").prop_map(move |(mask, before, after)| {
        let cased: String = word
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        format!("{before}{cased}{after}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever casing and spacing the model used, a repaired document is stable: checking
    /// it again changes nothing.
    #[test]
    fn a_checked_document_is_a_fixed_point(
        decision in prop::sample::select(vec!["approve", "reject", "conditional"])
            .prop_flat_map(casing),
        confidence in 0u32..=100,
        as_string in any::<bool>(),
        renamed in any::<bool>(),
        concerns in prop::collection::vec("[ a-zé中🚀]{0,12}", 0..4),
    ) {
        let confidence = f64::from(confidence) / 100.0;
        let mut doc = json!({"reasoning": " Because. ", "concerns": concerns});
        doc[if renamed { "verdict" } else { "decision" }] = json!(decision);
        doc["confidence"] =
            if as_string { json!(confidence.to_string()) } else { json!(confidence) };
        let first = check(kind("CONSENSUS"), doc);
        prop_assert!(first.valid, "{:?}", first.errors);
        prop_assert_eq!(&first.value["decision"], &json!(decision.trim().to_lowercase()));
        let second = check(kind("CONSENSUS"), first.value.clone());
        prop_assert!(second.valid && second.fixes.is_empty() && !second.repaired);
        prop_assert_eq!(second.value, first.value);
    }
}
