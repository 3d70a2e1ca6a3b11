//! `jsonpath`: RFC 9535 queries through serde_json_path.

use leforge_forgehook_sdk::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonPathInput {
    /// The JSON document to query.
    pub data: Value,
    /// A JSONPath expression starting with '$', e.g. `$.items[*].name`, `$..price` or
    /// `$.items[?@.qty > 1]`.
    pub path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct JsonPathOutput {
    /// Every value the path selects, in document order.
    pub matches: Vec<Value>,
}

pub fn jsonpath(input: JsonPathInput) -> Result<JsonPathOutput, Error> {
    let path = JsonPath::parse(&input.path)
        .map_err(|e| Error::invalid_input(format!("invalid JSONPath {:?}: {e}", input.path)))?;
    let matches = path.query(&input.data).all().into_iter().cloned().collect();
    Ok(JsonPathOutput { matches })
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::json;

    #[test]
    fn queries_select_values_in_document_order() {
        let data = json!({"items": [
            {"name": "a", "qty": 1, "tags": {"id": 7}},
            {"name": "b", "qty": 3, "tags": {"id": 8}}
        ]});
        for (path, expect) in [
            ("$.items[*].name", json!(["a", "b"])),
            ("$..id", json!([7, 8])),
            ("$.items[?@.qty > 1].name", json!(["b"])),
            ("$.items[-1].qty", json!([3])),
            ("$.missing", json!([])),
        ] {
            let out = call("jsonpath", json!({"data": data, "path": path})).unwrap();
            assert_eq!(out["matches"], expect, "{path}");
        }
    }

    #[test]
    fn bad_paths_are_reported() {
        let (code, msg) = fail("jsonpath", json!({"data": {}, "path": "items[0"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("invalid JSONPath \"items[0\": "), "{msg}");
        let (code, msg) = fail("jsonpath", json!({"data": {}}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.contains("missing field `path`"), "{msg}");
    }
}
