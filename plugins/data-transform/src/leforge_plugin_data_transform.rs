//! The `data-transform` built-in ForgeHook: converts tabular and structured text (CSV, XML,
//! YAML) to JSON and back, and queries JSON with JSONPath.
//!
//! Built for wasm32-wasip2 by plugins/builtin; on the native target the same endpoints run
//! through [`hook`]`().invoke(..)`, which is how the unit tests and the benchmark call them.

mod csv_json;
mod jsonpath;
mod xml;
mod yaml;

use leforge_forgehook_sdk::ForgeHook;

pub use csv_json::{csv_to_json, json_to_csv, CsvToJsonInput, CsvToJsonOutput};

/// Builds the ForgeHook: its manifest and endpoints.
pub fn hook() -> ForgeHook {
    ForgeHook::new(
        "data-transform",
        "Data transform",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Converts data between CSV, JSON, XML and YAML, and extracts values from JSON with \
             JSONPath. Use it to turn a pasted CSV or XML document into JSON records that other \
             tools (date-utils, formula-engine) can process, and to turn records back into CSV.",
    )
    .category("data")
    .tags(&["csv", "json", "xml", "yaml", "jsonpath", "convert"])
    .author("LeForge")
    // A 10 MB CSV becomes tens of MB of JSON inside the guest; the host still caps these.
    .memory_mb(256)
    .max_output_bytes(16 * 1024 * 1024)
    .timeout_ms(30_000)
    .endpoint(
        "csv_to_json",
        "Parses CSV text into JSON records (one object per row, keyed by the header). \
             Handles RFC 4180 quoting, CRLF line endings, a UTF-8 BOM and blank lines. The \
             delimiter is auto-detected among comma, semicolon, tab and pipe unless given. With \
             infer_types (default), numbers and true/false become JSON numbers and booleans and \
             empty cells become null; values with leading zeros (zip codes, ids like 007) stay \
             strings. Returns the rows, the column names in order and the row count.",
        csv_json::csv_to_json,
    )
    .endpoint(
        "json_to_csv",
        "Writes JSON records (objects) as CSV text with a header line. Columns are the given \
             `columns` in that order, or else every key in order of first appearance. Strings are \
             quoted only when needed (RFC 4180); null becomes an empty cell; nested arrays and \
             objects are written as JSON text.",
        csv_json::json_to_csv,
    )
    .endpoint(
        "xml_to_json",
        "Parses an XML document into JSON. Each element becomes a key holding its content: \
             plain text for a text-only element, otherwise an object whose attributes are keys \
             prefixed with '@', whose text is under '#text' and whose child elements are keys \
             (repeated children become an array). Values stay strings. The root element is the \
             single top-level key of `data`.",
        xml::xml_to_json,
    )
    .endpoint(
        "json_to_xml",
        "Writes JSON as an XML document, the inverse of xml_to_json: object keys become \
             elements, keys starting with '@' attributes, '#text' the element's text, arrays \
             repeated elements. If `root` is not given and `data` is an object with a single key, \
             that key is the root element; otherwise the document is wrapped in <root>.",
        xml::json_to_xml,
    )
    .endpoint(
        "yaml_to_json",
        "Parses YAML text into JSON. Several documents separated by '---' are returned as an \
             array of documents; non-string mapping keys become strings.",
        yaml::yaml_to_json,
    )
    .endpoint(
        "json_to_yaml",
        "Writes any JSON value as a YAML document.",
        yaml::json_to_yaml,
    )
    .endpoint(
        "jsonpath",
        "Evaluates a JSONPath query (RFC 9535, e.g. `$.store.book[?@.price < 10].title` or \
             `$..id`) against JSON `data` and returns every matching value in document order; no \
             match gives an empty list.",
        jsonpath::jsonpath,
    )
}

#[cfg(target_arch = "wasm32")]
leforge_forgehook_sdk::forgehook!(hook);

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// Calls an endpoint through the SDK with JSON, as the host would.
    pub fn call(endpoint: &str, input: Value) -> Result<Value, leforge_forgehook_sdk::Error> {
        super::hook()
            .invoke(endpoint, &input.to_string())
            .map(|out| serde_json::from_str(&out).unwrap())
    }

    /// The error code and message of a call that must fail.
    pub fn fail(endpoint: &str, input: Value) -> (String, String) {
        let e = call(endpoint, input).unwrap_err();
        (e.code, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lists_the_contract_endpoints_with_object_schemas() {
        let m = hook().manifest();
        assert_eq!(m["id"], "data-transform");
        let names: Vec<&str> = m["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "csv_to_json",
                "json_to_csv",
                "xml_to_json",
                "json_to_xml",
                "yaml_to_json",
                "json_to_yaml",
                "jsonpath"
            ]
        );
        for ep in m["endpoints"].as_array().unwrap() {
            assert_eq!(ep["input_schema"]["type"], "object", "{}", ep["name"]);
            assert!(ep["input_schema"]["properties"].is_object());
            assert!(!ep["description"].as_str().unwrap().is_empty());
        }
        let csv = &m["endpoints"][0]["input_schema"]["properties"];
        assert_eq!(csv["header"]["default"], true);
        assert_eq!(csv["infer_types"]["default"], true);
        assert!(csv["csv"]["description"].is_string());
    }
}
