//! Endpoint tests through `ForgeHook::invoke`, i.e. through the JSON contract.

use super::*;
use serde_json::json;

fn call(endpoint: &str, input: Value) -> Result<Value, Error> {
    hook()
        .invoke(endpoint, &input.to_string())
        .map(|out| serde_json::from_str(&out).unwrap())
}

fn ok(endpoint: &str, input: Value) -> Value {
    call(endpoint, input).unwrap()
}

fn err(endpoint: &str, input: Value) -> Error {
    call(endpoint, input).unwrap_err()
}

fn store() -> Value {
    json!({
        "store": {
            "book": [
                {"title": "Sayings", "author": "Rees", "price": 8.95},
                {"title": "Sword", "author": "Waugh", "price": 12.99},
                {"title": "Moby Dick", "author": "Melville", "price": 8.99, "isbn": "0-553"}
            ],
            "bicycle": {"color": "red", "price": 19.95}
        }
    })
}

#[test]
fn manifest_passes_the_servers_rules() {
    let manifest = leforge_core::forgehook::Manifest::from_json(&hook().manifest_json())
        .expect("the manifest parses");
    assert_eq!(manifest.validate(), vec![]);
}

#[test]
fn manifest_is_complete() {
    let m = hook().manifest();
    assert_eq!(m["id"], "json-utils");
    let names: Vec<&str> = m["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "query",
            "get",
            "set",
            "flatten",
            "unflatten",
            "merge",
            "diff",
            "pick",
            "omit",
            "validate"
        ]
    );
    let validate = &m["endpoints"][9];
    assert_eq!(
        validate["input_schema"]["required"],
        json!(["data", "schema"])
    );
    assert_eq!(
        validate["output_schema"]["required"],
        json!(["valid", "errors"])
    );
    assert_eq!(
        validate["output_schema"]["properties"]["errors"]["items"]["required"],
        json!(["path", "message"])
    );
    assert_eq!(
        m["endpoints"][3]["input_schema"]["properties"]["separator"]["default"],
        "."
    );
    assert_eq!(
        m["endpoints"][5]["input_schema"]["properties"]["arrays"]["enum"],
        json!(["replace", "concat"])
    );
    for ep in m["endpoints"].as_array().unwrap() {
        assert_eq!(ep["input_schema"]["type"], "object", "{}", ep["name"]);
    }
}

#[test]
fn query_jsonpath() {
    assert_eq!(
        ok(
            "query",
            json!({"data": store(), "path": "$.store.book[*].author"})
        ),
        json!({
            "matches": ["Rees", "Waugh", "Melville"],
            "paths": [
                "$['store']['book'][0]['author']",
                "$['store']['book'][1]['author']",
                "$['store']['book'][2]['author']"
            ]
        })
    );
    assert_eq!(
        ok(
            "query",
            json!({"data": store(), "path": "$.store.book[?@.price < 10].title"})
        )["matches"],
        json!(["Sayings", "Moby Dick"])
    );
    assert_eq!(
        ok(
            "query",
            json!({"data": store(), "path": "$.store.book[?length(@.title) > 7].title"})
        )["matches"],
        json!(["Moby Dick"])
    );
    assert_eq!(
        ok("query", json!({"data": store(), "path": "$..isbn"}))["matches"],
        json!(["0-553"])
    );
    assert_eq!(
        ok("query", json!({"data": store(), "path": "$.nothing"})),
        json!({"matches": [], "paths": []})
    );
}

#[test]
fn query_rejects_bad_paths() {
    let e = err("query", json!({"data": {}, "path": "$.store[?"}));
    assert_eq!(e.code, "INVALID_INPUT");
    assert!(
        e.message
            .starts_with("`path` is not a valid JSONPath (RFC 9535): "),
        "{}",
        e.message
    );
    let e = err("query", json!({"data": {}, "path": "store.book"}));
    assert_eq!(e.code, "INVALID_INPUT");
    let e = err("query", json!({"path": "$"}));
    assert!(e.message.contains("missing field `data`"), "{}", e.message);
}

#[test]
fn get_by_dot_path() {
    let data = store();
    assert_eq!(
        ok("get", json!({"data": data, "path": "store.book[1].title"})),
        json!({"value": "Sword", "found": true})
    );
    assert_eq!(
        ok("get", json!({"data": data, "path": "store.book.2.isbn"})),
        json!({"value": "0-553", "found": true})
    );
    assert_eq!(
        ok("get", json!({"data": data, "path": "$.store.bicycle"})),
        json!({"value": {"color": "red", "price": 19.95}, "found": true})
    );
    assert_eq!(
        ok(
            "get",
            json!({"data": data, "path": "store.book[7].title", "default": "n/a"})
        ),
        json!({"value": "n/a", "found": false})
    );
    assert_eq!(
        ok(
            "get",
            json!({"data": data, "path": "store.bicycle.color.shade"})
        ),
        json!({"value": null, "found": false})
    );
    assert_eq!(
        ok("get", json!({"data": {"a": null, "x.y": 1}, "path": "a"})),
        json!({"value": null, "found": true})
    );
    assert_eq!(
        ok(
            "get",
            json!({"data": {"a": null, "x.y": 1}, "path": "[\"x.y\"]"})
        ),
        json!({"value": 1, "found": true})
    );
    assert_eq!(
        ok("get", json!({"data": [1, 2], "path": ""})),
        json!({"value": [1, 2], "found": true})
    );
    assert_eq!(
        err("get", json!({"data": {}, "path": "a..b"})),
        Error::invalid_input("invalid path `a..b`: empty segment (two dots, or a dot at an end)")
    );
}

#[test]
fn set_by_dot_path() {
    assert_eq!(
        ok(
            "set",
            json!({"data": {"user": {"name": "Ada"}}, "path": "user.email", "value": "ada@x.org"})
        ),
        json!({"data": {"user": {"name": "Ada", "email": "ada@x.org"}}})
    );
    assert_eq!(
        ok("set", json!({"data": {}, "path": "a.b[0].c", "value": 1})),
        json!({"data": {"a": {"b": [{"c": 1}]}}})
    );
    assert_eq!(
        ok(
            "set",
            json!({"data": {"items": [1, 2]}, "path": "items[2]", "value": 3})
        ),
        json!({"data": {"items": [1, 2, 3]}})
    );
    assert_eq!(
        ok(
            "set",
            json!({"data": {"items": [1, 2]}, "path": "items.0", "value": 9})
        ),
        json!({"data": {"items": [9, 2]}})
    );
    assert_eq!(
        ok(
            "set",
            json!({"data": {"a": 1}, "path": "", "value": [true]})
        ),
        json!({"data": [true]})
    );
    assert_eq!(
        ok("set", json!({"data": null, "path": "a", "value": 1})),
        json!({"data": {"a": 1}})
    );
}

#[test]
fn set_rejects_impossible_writes() {
    assert_eq!(
        err("set", json!({"data": {"items": [1]}, "path": "items[3]", "value": 0})),
        Error::invalid_input("cannot set `items[3]`: index 3 is past the end of `items` (length 1); use [1] to append")
    );
    assert_eq!(
        err(
            "set",
            json!({"data": {"a": "text"}, "path": "a.b", "value": 0})
        ),
        Error::invalid_input("cannot set `a.b`: `a` is a string, which has no fields")
    );
    assert_eq!(
        err(
            "set",
            json!({"data": {"a": [1]}, "path": "a.first", "value": 0})
        ),
        Error::invalid_input("cannot set `a.first`: `a` is an array; use an index such as [0]")
    );
    assert_eq!(
        err(
            "set",
            json!({"data": {"a": {}}, "path": "a[0]", "value": 0})
        ),
        Error::invalid_input(
            "cannot set `a[0]`: `a` is an object, not an array; use a key instead of [0]"
        )
    );
    assert_eq!(
        err("set", json!({"data": 5, "path": "a", "value": 0})),
        Error::invalid_input("cannot set `a`: the root is a number, which has no fields")
    );
    let e = err("set", json!({"data": {}, "path": "a"}));
    assert!(e.message.contains("missing field `value`"), "{}", e.message);
}

#[test]
fn flatten_and_unflatten_round_trip() {
    let nested = json!({
        "user": {"name": "Ada", "address": {"city": "London"}},
        "tags": ["x", "y"],
        "empty": {},
        "none": [],
        "n": null
    });
    let flat = json!({
        "user.name": "Ada",
        "user.address.city": "London",
        "tags.0": "x",
        "tags.1": "y",
        "empty": {},
        "none": [],
        "n": null
    });
    assert_eq!(
        ok("flatten", json!({"data": nested})),
        json!({"data": flat})
    );
    assert_eq!(
        ok("unflatten", json!({"data": flat})),
        json!({"data": nested})
    );
    assert_eq!(
        ok("flatten", json!({"data": [{"a": 1}, 2], "separator": "/"})),
        json!({"data": {"0/a": 1, "1": 2}})
    );
    assert_eq!(
        ok(
            "unflatten",
            json!({"data": {"a__b": 1, "a__c": 2}, "separator": "__"})
        ),
        json!({"data": {"a": {"b": 1, "c": 2}}})
    );
    // Not 0..n-1 (a gap, a leading zero): stays an object.
    assert_eq!(
        ok(
            "unflatten",
            json!({"data": {"a.0": 1, "a.2": 2, "b.01": 3, "b.1": 4}})
        ),
        json!({"data": {"a": {"0": 1, "2": 2}, "b": {"01": 3, "1": 4}}})
    );
    assert_eq!(
        ok("unflatten", json!({"data": {"1": "b", "0": "a"}})),
        json!({"data": ["a", "b"]})
    );
}

#[test]
fn flatten_and_unflatten_reject_bad_input() {
    assert_eq!(
        err("flatten", json!({"data": "text"})),
        Error::invalid_input("`data` must be an object or an array to flatten")
    );
    assert_eq!(
        err("flatten", json!({"data": {}, "separator": ""})),
        Error::invalid_input("`separator` must not be empty")
    );
    assert_eq!(
        err("unflatten", json!({"data": {"a": 1, "a.b": 2}})),
        Error::invalid_input(
            "key `a.b` conflicts with key `a`, which holds a value rather than an object"
        )
    );
    assert_eq!(
        err("unflatten", json!({"data": {"a.b": 2, "a": 1}})),
        Error::invalid_input("key `a` conflicts with another key that nests under it")
    );
    let e = err("unflatten", json!({"data": [1]}));
    assert!(
        e.message.starts_with("at `data`: invalid type"),
        "{}",
        e.message
    );
}

#[test]
fn merge_deep() {
    assert_eq!(
        ok(
            "merge",
            json!({"objects": [
                {"db": {"host": "localhost", "port": 5432}, "tags": ["a"], "debug": true},
                {"db": {"port": 6543, "user": "app"}, "tags": ["b"], "debug": null},
                {"db": {"host": "prod"}}
            ]})
        ),
        json!({"data": {"db": {"host": "prod", "port": 6543, "user": "app"}, "tags": ["b"], "debug": null}})
    );
    assert_eq!(
        ok(
            "merge",
            json!({"objects": [{"tags": ["a"]}, {"tags": ["b", "c"]}], "arrays": "concat"})
        ),
        json!({"data": {"tags": ["a", "b", "c"]}})
    );
    assert_eq!(
        ok("merge", json!({"objects": [{"a": {"b": 1}}, {"a": 2}]})),
        json!({"data": {"a": 2}})
    );
    assert_eq!(
        ok("merge", json!({"objects": [{"a": 1}]})),
        json!({"data": {"a": 1}})
    );
    assert_eq!(
        err("merge", json!({"objects": []})),
        Error::invalid_input("`objects` must list at least one value to merge")
    );
    assert_eq!(
        err("merge", json!({"objects": {"a": 1}})).code,
        "INVALID_INPUT"
    );
    assert_eq!(
        err("merge", json!({"objects": [{}], "arrays": "zip"})).code,
        "INVALID_INPUT"
    );
}

#[test]
fn diff_lists_changes_with_paths() {
    assert_eq!(
        ok(
            "diff",
            json!({
                "before": {"name": "Ada", "age": 36, "tags": ["a", "b"], "x.y": 1, "gone": true, "n": 1},
                "after": {"name": "Ada L", "age": 36, "tags": ["a"], "x.y": 2, "n": 1.0, "new": {"k": 1}}
            })
        ),
        json!({
            "equal": false,
            "changes": [
                {"path": "name", "op": "changed", "before": "Ada", "after": "Ada L"},
                {"path": "tags[1]", "op": "removed", "before": "b"},
                {"path": "[\"x.y\"]", "op": "changed", "before": 1, "after": 2},
                {"path": "gone", "op": "removed", "before": true},
                {"path": "new", "op": "added", "after": {"k": 1}}
            ]
        })
    );
    assert_eq!(
        ok(
            "diff",
            json!({"before": {"a": [1, {"b": 2}]}, "after": {"a": [1, {"b": 2}]}})
        ),
        json!({"equal": true, "changes": []})
    );
    assert_eq!(
        ok("diff", json!({"before": [1], "after": {"0": 1}})),
        json!({"equal": false, "changes": [{"path": "", "op": "changed", "before": [1], "after": {"0": 1}}]})
    );
    // Reported paths are accepted by `get`.
    assert_eq!(
        ok("get", json!({"data": {"x.y": 2}, "path": "[\"x.y\"]"})),
        json!({"value": 2, "found": true})
    );
    assert!(err("diff", json!({"before": 1}))
        .message
        .contains("missing field `after`"));
}

#[test]
fn pick_and_omit() {
    let record = json!({"id": 1, "user": {"name": "Ada", "email": "a@x"}, "items": [10, 20, 30]});
    assert_eq!(
        ok(
            "pick",
            json!({"data": record, "paths": ["id", "user.name", "missing.field"]})
        ),
        json!({"data": {"id": 1, "user": {"name": "Ada"}}})
    );
    assert_eq!(
        ok("pick", json!({"data": record, "paths": ["items[1]"]})),
        json!({"data": {"items": [null, 20]}})
    );
    assert_eq!(
        ok(
            "omit",
            json!({"data": record, "paths": ["user.email", "nope", "items[0]", "items[2]"]})
        ),
        json!({"data": {"id": 1, "user": {"name": "Ada"}, "items": [20]}})
    );
    let records = json!([{"id": 1, "secret": "s", "name": "a"}, {"id": 2, "name": "b"}]);
    assert_eq!(
        ok("pick", json!({"data": records, "paths": ["id", "name"]})),
        json!({"data": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
    );
    assert_eq!(
        ok("omit", json!({"data": records, "paths": ["secret"]})),
        json!({"data": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
    );
    assert_eq!(
        err("pick", json!({"data": record, "paths": ["a["]})),
        Error::invalid_input("invalid path `a[`: `[` without a matching `]`")
    );
    assert_eq!(
        err("omit", json!({"data": record, "paths": "id"})).code,
        "INVALID_INPUT"
    );
}

#[test]
fn validate_json_schema_2020_12() {
    let schema = json!({
        "type": "object",
        "required": ["name", "items"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "items": {
                "type": "array",
                "prefixItems": [{"type": "string"}],
                "items": {"type": "object", "properties": {"price": {"type": "number", "minimum": 0}}, "required": ["price"]}
            }
        },
        "additionalProperties": false
    });
    assert_eq!(
        ok(
            "validate",
            json!({"data": {"name": "x", "items": ["head", {"price": 1}]}, "schema": schema})
        ),
        json!({"valid": true, "errors": []})
    );
    let out = ok(
        "validate",
        json!({"data": {"name": "", "items": [1, {"price": -5}, {}], "extra": 1}, "schema": schema}),
    );
    assert_eq!(out["valid"], false);
    let mut errors: Vec<(String, String)> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        vec![
            (
                "".to_string(),
                "Additional properties are not allowed ('extra' was unexpected)".to_string()
            ),
            (
                "/items/0".to_string(),
                "1 is not of type \"string\"".to_string()
            ),
            (
                "/items/1/price".to_string(),
                "-5 is less than the minimum of 0".to_string()
            ),
            (
                "/items/2".to_string(),
                "\"price\" is a required property".to_string()
            ),
            (
                "/name".to_string(),
                "\"\" is shorter than 1 character".to_string()
            ),
        ]
    );
}

#[test]
fn validate_defaults_to_2020_12_and_handles_refs() {
    // `prefixItems` only exists in 2020-12; under an older draft it would be ignored.
    let schema = json!({"prefixItems": [{"type": "integer"}]});
    assert_eq!(
        ok("validate", json!({"data": ["a"], "schema": schema}))["valid"],
        false
    );
    let schema = json!({
        "$defs": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
        "type": "array",
        "items": {"$ref": "#/$defs/pos"}
    });
    let out = ok("validate", json!({"data": [1, 0], "schema": schema}));
    assert_eq!(
        out,
        json!({"valid": false, "errors": [{"path": "/1", "message": "0 is less than or equal to the minimum of 0"}]})
    );
}

#[test]
fn validate_rejects_bad_schemas() {
    let e = err(
        "validate",
        json!({"data": 1, "schema": {"type": "nonsense"}}),
    );
    assert_eq!(e.code, "INVALID_INPUT");
    assert!(
        e.message
            .starts_with("`schema` is not a valid JSON Schema: "),
        "{}",
        e.message
    );
    // No network or file access: an external `$ref` cannot be resolved.
    let e = err(
        "validate",
        json!({"data": 1, "schema": {"$ref": "https://example.com/s.json"}}),
    );
    assert_eq!(e.code, "INVALID_INPUT");
    assert!(
        e.message
            .starts_with("`schema` is not a valid JSON Schema: "),
        "{}",
        e.message
    );
    let e = err("validate", json!({"data": 1, "schema": {"pattern": "("}}));
    assert_eq!(e.code, "INVALID_INPUT");
    let e = err("validate", json!({"data": 1}));
    assert!(
        e.message.contains("missing field `schema`"),
        "{}",
        e.message
    );
}
