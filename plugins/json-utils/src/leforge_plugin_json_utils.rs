//! `json-utils`: query (JSONPath), read and write by dot path, flatten and unflatten, deep
//! merge, diff, pick and omit, and JSON Schema 2020-12 validation.
//!
//! Endpoints that return a document call it `data`, like the input they take, so the output
//! of one call can be passed to the next as it is.

use leforge_forgehook_sdk::{forgehook, Error, ForgeHook};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod paths;
mod structure;

// Input enums derive Serialize so that schemars can write their `default`s into the schema,
// and their variants carry no doc comments: schemars would turn those into a `oneOf` of
// `const`s, which LLM providers handle worse than a plain `enum`.

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueryIn {
    /// The JSON document to search.
    data: Value,
    /// A JSONPath expression (RFC 9535), e.g. `$.store.book[*].author`,
    /// `$..price`, `$.items[?@.qty > 1].name`, `$.items[0:2]`.
    path: String,
}

#[derive(Serialize, JsonSchema)]
struct QueryOut {
    /// The values the expression selects, in document order (empty when nothing matches).
    matches: Vec<Value>,
    /// The location of each match as a normalized JSONPath, e.g. `$['items'][0]['name']`;
    /// same order as `matches`.
    paths: Vec<String>,
}

fn query(input: QueryIn) -> Result<QueryOut, Error> {
    let path = serde_json_path::JsonPath::parse(&input.path).map_err(|e| {
        Error::invalid_input(format!("`path` is not a valid JSONPath (RFC 9535): {e}"))
    })?;
    let located = path.query_located(&input.data);
    let paths = located.locations().map(|l| l.to_string()).collect();
    let matches = located.nodes().cloned().collect();
    Ok(QueryOut { matches, paths })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetIn {
    /// The JSON document to read from.
    data: Value,
    /// A dot path: `user.address.city`, `items[0].name` (or `items.0.name`), `["key.with.dots"]`.
    /// The empty string is the whole document.
    path: String,
    /// Returned as `value` when nothing is at `path` (null when omitted).
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Serialize, JsonSchema)]
struct GetOut {
    /// The value at `path`, or `default` when there is none.
    value: Value,
    /// Whether something (even null) is at `path`.
    found: bool,
}

fn get(input: GetIn) -> Result<GetOut, Error> {
    let segs = paths::parse(&input.path)?;
    Ok(match paths::get(&input.data, &segs) {
        Some(v) => GetOut {
            value: v.clone(),
            found: true,
        },
        None => GetOut {
            value: input.default.unwrap_or(Value::Null),
            found: false,
        },
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetIn {
    /// The JSON document to change.
    data: Value,
    /// A dot path (see `get`). Missing parents are created: an `[index]` segment creates an
    /// array, any other segment an object. An index equal to an array's length appends.
    path: String,
    /// The value to write at `path`.
    value: Value,
}

#[derive(Serialize, JsonSchema)]
struct DataOut {
    /// The resulting JSON document.
    data: Value,
}

fn set(input: SetIn) -> Result<DataOut, Error> {
    let segs = paths::parse(&input.path)?;
    let mut data = input.data;
    paths::set(&mut data, &segs, input.value, false)?;
    Ok(DataOut { data })
}

fn default_separator() -> String {
    ".".into()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlattenIn {
    /// A JSON object or array to flatten.
    data: Value,
    /// Joins the keys of nested levels; array elements use their index as the key.
    #[serde(default = "default_separator")]
    separator: String,
}

#[derive(Serialize, JsonSchema)]
struct FlatOut {
    /// A one-level object from joined key paths to leaf values, e.g.
    /// `{"user.name": "Ada", "tags.0": "x"}`; empty objects and arrays are kept as leaves.
    data: Map<String, Value>,
}

fn flatten(input: FlattenIn) -> Result<FlatOut, Error> {
    if input.separator.is_empty() {
        return Err(Error::invalid_input("`separator` must not be empty"));
    }
    if !matches!(input.data, Value::Object(_) | Value::Array(_)) {
        return Err(Error::invalid_input(
            "`data` must be an object or an array to flatten",
        ));
    }
    Ok(FlatOut {
        data: structure::flatten(&input.data, &input.separator),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UnflattenIn {
    /// A one-level object whose keys are joined paths, e.g. `{"user.name": "Ada", "tags.0": "x"}`.
    data: Map<String, Value>,
    /// The separator used in the keys.
    #[serde(default = "default_separator")]
    separator: String,
}

fn unflatten(input: UnflattenIn) -> Result<DataOut, Error> {
    if input.separator.is_empty() {
        return Err(Error::invalid_input("`separator` must not be empty"));
    }
    Ok(DataOut {
        data: structure::unflatten(input.data, &input.separator)?,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum ArrayMerge {
    #[default]
    Replace,
    Concat,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MergeIn {
    /// Two or more JSON values, merged left to right: objects are merged key by key at every
    /// depth, and for anything else the later value wins (a later null overwrites).
    #[schemars(length(min = 1))]
    objects: Vec<Value>,
    /// How two arrays at the same place combine: `replace` (default: the later array wins)
    /// or `concat` (the later array's elements are appended).
    #[serde(default)]
    arrays: ArrayMerge,
}

fn merge(input: MergeIn) -> Result<DataOut, Error> {
    let mut values = input.objects.into_iter();
    let Some(mut data) = values.next() else {
        return Err(Error::invalid_input(
            "`objects` must list at least one value to merge",
        ));
    };
    for v in values {
        structure::deep_merge(&mut data, v, input.arrays == ArrayMerge::Concat);
    }
    Ok(DataOut { data })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiffIn {
    /// The original JSON value.
    before: Value,
    /// The changed JSON value.
    after: Value,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum ChangeOp {
    Added,
    Removed,
    Changed,
}

#[derive(Serialize, JsonSchema)]
struct Change {
    /// Where the change is, as a dot path that `get` and `set` accept (`""` is the root).
    path: String,
    /// `added` (only in `after`), `removed` (only in `before`), or `changed` (different
    /// values, or different types).
    op: ChangeOp,
    /// The old value (absent for `added`).
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<Value>,
    /// The new value (absent for `removed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Value>,
}

#[derive(Serialize, JsonSchema)]
struct DiffOut {
    /// Whether the two values are equal (numbers compare by value: 1 equals 1.0).
    equal: bool,
    /// The differences in document order. Objects are compared key by key and arrays index
    /// by index (an insertion in an array shows as changes at later indices); a value whose
    /// type differs is reported once, as `changed`.
    changes: Vec<Change>,
}

fn diff(input: DiffIn) -> Result<DiffOut, Error> {
    let mut changes = Vec::new();
    structure::diff("", &input.before, &input.after, &mut changes);
    Ok(DiffOut {
        equal: changes.is_empty(),
        changes,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PathsIn {
    /// An object, or an array of objects (records) to which the paths apply one by one.
    data: Value,
    /// Dot paths (see `get`), e.g. `["id", "user.name"]`.
    paths: Vec<String>,
}

fn parse_all(list: &[String]) -> Result<Vec<Vec<paths::Seg>>, Error> {
    list.iter().map(|p| paths::parse(p)).collect()
}

/// Applies `f` to `data`, or to each element when `data` is an array of records.
fn per_record(data: Value, f: impl Fn(Value) -> Result<Value, Error>) -> Result<Value, Error> {
    match data {
        Value::Array(items) => items
            .into_iter()
            .map(&f)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => f(other),
    }
}

fn pick(input: PathsIn) -> Result<DataOut, Error> {
    let segs = parse_all(&input.paths)?;
    let data = per_record(input.data, |record| {
        let mut out = Value::Object(Map::new());
        for s in &segs {
            if let Some(v) = paths::get(&record, s) {
                // Picking `items[2]` keeps index 2 (nulls before it) rather than moving it.
                paths::set(&mut out, s, v.clone(), true)?;
            }
        }
        Ok(out)
    })?;
    Ok(DataOut { data })
}

fn omit(input: PathsIn) -> Result<DataOut, Error> {
    let mut segs = parse_all(&input.paths)?;
    segs.sort_by(|a, b| paths::removal_order(a, b));
    let data = per_record(input.data, |mut record| {
        for s in &segs {
            paths::remove(&mut record, s);
        }
        Ok(record)
    })?;
    Ok(DataOut { data })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ValidateIn {
    /// The JSON value to check.
    data: Value,
    /// A JSON Schema. Draft 2020-12 unless its `$schema` names another draft; `$ref` may only
    /// point inside the schema (no network or file access).
    schema: Value,
}

#[derive(Serialize, JsonSchema)]
struct ValidationError {
    /// Where in `data` the problem is, as a JSON Pointer (RFC 6901): `""` for the root,
    /// `/items/0/price` for a nested value.
    path: String,
    /// What is wrong, e.g. `"abc" is not of type "integer"`.
    message: String,
}

#[derive(Serialize, JsonSchema)]
struct ValidateOut {
    /// Whether `data` satisfies `schema`.
    valid: bool,
    /// Every violation found (empty when valid).
    errors: Vec<ValidationError>,
}

fn validate(input: ValidateIn) -> Result<ValidateOut, Error> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&input.schema)
        .map_err(|e| Error::invalid_input(format!("`schema` is not a valid JSON Schema: {e}")))?;
    let errors: Vec<ValidationError> = validator
        .iter_errors(&input.data)
        .map(|e| ValidationError {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    Ok(ValidateOut {
        valid: errors.is_empty(),
        errors,
    })
}

/// The ForgeHook, as the component exports it and as tests invoke it.
pub fn hook() -> ForgeHook {
    ForgeHook::new("json-utils", "JSON utilities", env!("CARGO_PKG_VERSION"))
        .description(
            "Work with JSON documents: JSONPath queries, get/set by dot path, flatten and \
             unflatten, deep merge, structural diff, pick/omit fields, and JSON Schema \
             validation.",
        )
        .category("data")
        .tags(&["json", "jsonpath", "schema", "transform"])
        .author("LeForge")
        .endpoint(
            "query",
            "Selects values from a JSON document with a JSONPath expression (RFC 9535), e.g. \
             `$.orders[*].total`, `$..email`, or a filter `$.items[?@.price > 10]`. Returns the \
             matching values and their locations.",
            query,
        )
        .endpoint(
            "get",
            "Reads one value from a JSON document by dot path (`user.address.city`, \
             `items[0].name`), with `found` telling whether it exists and an optional default.",
            get,
        )
        .endpoint(
            "set",
            "Writes a value into a JSON document at a dot path (`user.address.city`, \
             `items[0].name`), creating missing parent objects and arrays, and returns the \
             updated document.",
            set,
        )
        .endpoint(
            "flatten",
            "Flattens nested JSON into a one-level object whose keys are joined paths, e.g. \
             {\"user\": {\"name\": \"Ada\"}, \"tags\": [\"x\"]} to {\"user.name\": \"Ada\", \
             \"tags.0\": \"x\"}. Useful before writing CSV or comparing fields.",
            flatten,
        )
        .endpoint(
            "unflatten",
            "Rebuilds nested JSON from a one-level object with joined-path keys (the inverse of \
             flatten): {\"user.name\": \"Ada\", \"tags.0\": \"x\"} to {\"user\": {\"name\": \
             \"Ada\"}, \"tags\": [\"x\"]}. Levels whose keys are exactly 0, 1, 2, ... become \
             arrays.",
            unflatten,
        )
        .endpoint(
            "merge",
            "Deep-merges JSON values left to right: nested objects are combined key by key and \
             later values override earlier ones; arrays are replaced or concatenated. Use it \
             to apply defaults or patches to a configuration or record.",
            merge,
        )
        .endpoint(
            "diff",
            "Compares two JSON values and lists what was added, removed or changed, each with \
             its dot path and the old and new values.",
            diff,
        )
        .endpoint(
            "pick",
            "Keeps only the given fields (dot paths) of an object, or of every object in an \
             array of records, preserving their nesting.",
            pick,
        )
        .endpoint(
            "omit",
            "Removes the given fields (dot paths) from an object, or from every object in an \
             array of records. Paths that do not exist are ignored.",
            omit,
        )
        .endpoint(
            "validate",
            "Validates JSON data against a JSON Schema (draft 2020-12 by default) and returns \
             whether it is valid and every error with its location (a JSON Pointer) and \
             message.",
            validate,
        )
}

forgehook!(hook);

#[cfg(test)]
mod tests;
