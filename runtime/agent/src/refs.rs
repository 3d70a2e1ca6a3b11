//! Data references: `{"$ref": "input.data.csv"}` or `{"$ref": "steps.2.output.rows"}` in a
//! tool argument or a final answer stands for the value at that path, so that a model never
//! has to retype data, and large values never have to pass through it.
//!
//! Paths are dot-separated, with `[n]` or `.n` for array items:
//! - `input.data[.<path>]` — the run's data;
//! - `steps.<n>[.output][.<path>]` — the output of step n (1-based, as in the trace). The
//!   `output` segment may be left out, as small models often do.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

/// The error code an unresolvable reference reports to the model.
pub const INVALID_REFERENCE: &str = "INVALID_REFERENCE";

/// What references can name: the run's inputs and the outputs of finished steps.
#[derive(Debug, Default)]
pub struct Scope {
    pub data: Option<Value>,
    pub outputs: HashMap<i32, Arc<Value>>,
    /// Whether references written as text also resolve (`"{{title}}"`, `"{0}"`,
    /// `"input.data.csv"`, `"{$ref: 'input.data.csv'}"`): on in json mode, for the small
    /// models it serves. Off, only reference objects resolve, so a tool that takes
    /// `{{name}}` templates of its own (string-utils `template`) gets them as written.
    pub text_refs: bool,
}

/// The path of a reference object, when `v` is one: an object whose only key is `$ref`
/// with a string value.
pub fn ref_path(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get("$ref").and_then(Value::as_str),
        _ => None,
    }
}

/// Whether `v` holds a reference anywhere: a reference object, or with `text_refs` a string
/// that may be one written as text.
pub fn contains_ref(v: &Value, text_refs: bool) -> bool {
    match v {
        Value::Object(m) => ref_path(v).is_some() || m.values().any(|x| contains_ref(x, text_refs)),
        Value::Array(a) => a.iter().any(|x| contains_ref(x, text_refs)),
        Value::String(s) => {
            text_refs
                && (s.contains("{{")
                    || s.contains("$ref")
                    || bare_path(s)
                    || placeholder(s).is_some())
        }
        _ => false,
    }
}

/// A whole string that reads as a reference path, `"input.data.csv"`, `"input.csv"` or
/// `"steps.1.output.rows"`: small models write the path where the reference object goes.
fn bare_path(text: &str) -> bool {
    text.len() <= 200
        && (text.starts_with("input.") || text.starts_with("steps."))
        && !text.contains(char::is_whitespace)
}

/// The name in a whole-string placeholder, `"{text}"` or `"{0}"`, as small models write a
/// format string's field where the value goes.
fn placeholder(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    (!inner.is_empty()
        && inner.len() <= 100
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
    .then_some(inner)
}

/// The value of a reference written as text, or `None` when the text is no such reference
/// or names nothing (it may be meant literally, and is kept as written).
fn text_ref(text: &str, scope: &Scope) -> Option<Value> {
    if text.contains("$ref") {
        return lookup_lenient(stringified_ref(text)?, scope).cloned();
    }
    if text.contains("{{") {
        return expand_templates(text, scope);
    }
    if let Some(name) = placeholder(text) {
        // `{0}` is the data's first field.
        return match name.parse::<usize>() {
            Ok(i) => scope.data.as_ref()?.as_object()?.values().nth(i).cloned(),
            Err(_) => lookup_lenient(name, scope).cloned(),
        };
    }
    if bare_path(text) {
        return lookup(text, scope).ok().cloned();
    }
    None
}

/// The path of a reference written as text, as small models do: `"{$ref: 'input.data.csv'}"`
/// or `"{\"$ref\": \"input.data.csv\"}"`.
fn stringified_ref(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
    let inner = inner.trim_start_matches(['\\', '"', '\'']);
    let rest = inner.strip_prefix("$ref")?;
    let rest = rest.trim_start_matches(['\\', '"', '\'']).trim_start();
    let path = rest.strip_prefix(':')?.trim();
    let path = path.trim_matches(['\\', '"', '\'', ' ']);
    (!path.is_empty() && !path.contains(char::is_whitespace)).then_some(path)
}

/// A path as written in text: rooted, or a bare field of the data (`title`).
fn lookup_lenient<'s>(path: &str, scope: &'s Scope) -> Option<&'s Value> {
    lookup(path, scope)
        .ok()
        .or_else(|| lookup(&format!("input.data.{path}"), scope).ok())
}

/// Small models often write a data field as a template, `"{{title}}"` or
/// `"{{input.data.title}}"`, rather than as a reference object. A string that is exactly one
/// template stands for the value (of any type); templates inside a longer string are
/// replaced by the value's text. A template whose path does not resolve is left as written:
/// it may be meant literally.
fn expand_templates(text: &str, scope: &Scope) -> Option<Value> {
    let template = |inner: &str| -> Option<&Value> {
        let path = inner.trim();
        if path.is_empty() || path.contains(char::is_whitespace) {
            return None;
        }
        lookup_lenient(path, scope)
    };
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
    {
        if !inner.contains("{{") {
            return template(inner).cloned();
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        let inner = &rest[open + 2..open + 2 + close];
        out.push_str(&rest[..open]);
        match template(inner) {
            Some(Value::String(s)) => {
                out.push_str(s);
                changed = true;
            }
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                out.push_str(&v.to_string());
                changed = true;
            }
            _ => out.push_str(&rest[open..open + 4 + close]),
        }
        rest = &rest[open + 4 + close..];
    }
    out.push_str(rest);
    changed.then(|| Value::String(out))
}

/// `v` with every reference replaced by its value. The error names the first reference
/// that does not resolve and why, in words a model can act on.
pub fn resolve(v: &Value, scope: &Scope) -> Result<Value, String> {
    if let Some(path) = ref_path(v) {
        return lookup(path, scope).cloned();
    }
    Ok(match v {
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, x) in m {
                out.insert(k.clone(), resolve(x, scope)?);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| resolve(x, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::String(text) if scope.text_refs => {
            text_ref(text, scope).unwrap_or_else(|| v.clone())
        }
        other => other.clone(),
    })
}

/// One step of a path: a field name or an array index.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.trim().split('.') {
        // `rows[0][1]` is `rows`, `0`, `1`.
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(rest[..open].to_string());
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                match stripped.find(']') {
                    Some(close) => {
                        out.push(stripped[..close].trim_matches(['"', '\'']).to_string());
                        rest = &stripped[close + 1..];
                    }
                    None => {
                        out.push(stripped.to_string());
                        rest = "";
                    }
                }
            }
            if !rest.is_empty() {
                out.push(rest.to_string());
            }
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

fn lookup<'s>(path: &str, scope: &'s Scope) -> Result<&'s Value, String> {
    let segs = segments(path);
    let unknown = |why: String| format!("reference '{path}' does not resolve: {why}");
    let data = || match &scope.data {
        Some(d) => Ok(d),
        None => Err(unknown("this run has no data".into())),
    };
    let (root, rest): (&Value, &[String]) = match segs.as_slice() {
        [input, field, rest @ ..] if input == "input" && field == "data" => (data()?, rest),
        // Small models drop a segment: `data.csv` and `input.csv` mean `input.data.csv`.
        [first, rest @ ..] if first == "data" || first == "input" => (data()?, rest),
        [steps, n, rest @ ..] if steps == "steps" => {
            let Ok(n) = n.parse::<i32>() else {
                return Err(unknown(format!("'{n}' is not a step number")));
            };
            let Some(out) = scope.outputs.get(&n) else {
                let mut have: Vec<_> = scope.outputs.keys().copied().collect();
                have.sort_unstable();
                let have = if have.is_empty() {
                    "no step has an output yet".to_string()
                } else {
                    format!(
                        "steps with an output: {}",
                        have.iter()
                            .map(i32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(unknown(format!("step {n} has no output ({have})")));
            };
            let rest = match rest {
                [first, tail @ ..] if first == "output" => tail,
                _ => rest,
            };
            (out.as_ref(), rest)
        }
        _ => {
            return Err(unknown(
                "a reference starts with input.data or steps.<n>.output".into(),
            ))
        }
    };
    let mut at = root;
    for (i, seg) in rest.iter().enumerate() {
        let next = match at {
            Value::Object(m) => m.get(seg.as_str()),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        at = match next {
            Some(v) => v,
            None => {
                let so_far = rest[..i].join(".");
                let here = match at {
                    Value::Object(m) => {
                        let keys: Vec<_> = m.keys().take(20).map(String::as_str).collect();
                        format!("its fields are: {}", keys.join(", "))
                    }
                    Value::Array(a) => format!("it is an array of {} items", a.len()),
                    other => format!("it is {}", kind(other)),
                };
                let at_name = if so_far.is_empty() {
                    "the root".to_string()
                } else {
                    format!("'{so_far}'")
                };
                return Err(unknown(format!("no '{seg}' at {at_name}; {here}")));
            }
        };
    }
    Ok(at)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Size of `v` as compact JSON, counted without building the text.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Items or characters a preview shows of a large value.
const PREVIEW_ITEMS: usize = 3;
const PREVIEW_CHARS: usize = 300;

/// What the model sees of a value: the value itself when it fits the budget, else a
/// preview — size, shape, the first items — and the reference that stands for it.
pub fn for_model(v: &Value, path: &str, budget: usize) -> Value {
    let Some(mut p) = summary_head(v, path, budget) else {
        return v.clone();
    };
    p.insert(
        "note".into(),
        json!("too large to show in full: pass the `ref` object (or one with a longer path) as an argument or as your answer"),
    );
    match v {
        Value::Array(a) => {
            p.insert("length".into(), json!(a.len()));
            let per_item = budget / (2 * PREVIEW_ITEMS);
            let first: Vec<Value> = a
                .iter()
                .take(PREVIEW_ITEMS)
                .enumerate()
                .map(|(i, x)| small(x, &format!("{path}[{i}]"), per_item))
                .collect();
            p.insert("first_items".into(), Value::Array(first));
        }
        Value::Object(m) => {
            let per_field = (budget / 2 / m.len().max(1)).max(64);
            let fields: Map<String, Value> = m
                .iter()
                .take(30)
                .map(|(k, x)| (k.clone(), small(x, &format!("{path}.{k}"), per_field)))
                .collect();
            p.insert("fields".into(), Value::Object(fields));
        }
        Value::String(s) => {
            p.insert("length".into(), json!(s.chars().count()));
            p.insert(
                "start".into(),
                json!(s.chars().take(PREVIEW_CHARS).collect::<String>()),
            );
        }
        _ => {}
    }
    Value::Object(p)
}

/// The reference, size and type of a value larger than `budget`; `None` when it fits.
fn summary_head(v: &Value, path: &str, budget: usize) -> Option<Map<String, Value>> {
    let size = json_len(v);
    if size <= budget {
        return None;
    }
    let mut p = Map::new();
    p.insert("ref".into(), json!({"$ref": path}));
    p.insert("size_bytes".into(), json!(size));
    let article = kind(v);
    let name = article
        .strip_prefix("an ")
        .or_else(|| article.strip_prefix("a "));
    p.insert("type".into(), json!(name.unwrap_or(article)));
    Some(p)
}

/// A value shown inside a preview: itself when small, else a one-line summary with its ref.
fn small(v: &Value, path: &str, budget: usize) -> Value {
    let Some(mut p) = summary_head(v, path, budget) else {
        return v.clone();
    };
    match v {
        Value::Array(a) => {
            p.insert("length".into(), json!(a.len()));
            if let Some(first) = a.first() {
                if json_len(first) <= budget {
                    p.insert("first_item".into(), first.clone());
                }
            }
        }
        Value::Object(m) => {
            p.insert("keys".into(), json!(m.keys().take(20).collect::<Vec<_>>()));
        }
        Value::String(s) => {
            p.insert("length".into(), json!(s.chars().count()));
            p.insert(
                "start".into(),
                json!(s
                    .chars()
                    .take(PREVIEW_CHARS.min(budget))
                    .collect::<String>()),
            );
        }
        _ => {}
    }
    Value::Object(p)
}

/// The run's data as the first user message shows it: whole when it fits the budget, else
/// each large field as a preview with its `input.data.<field>` reference.
pub fn data_for_model(data: &Value, budget: usize) -> Value {
    if json_len(data) <= budget {
        return data.clone();
    }
    match data {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), for_model(v, &format!("input.data.{k}"), budget)))
                .collect(),
        ),
        other => for_model(other, "input.data", budget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut outputs = HashMap::new();
        outputs.insert(
            2,
            Arc::new(json!({"rows": [{"region": "West", "amount": 5}], "count": 1})),
        );
        Scope {
            data: Some(json!({"csv": "a,b\n1,2", "nested": {"list": [10, 20]}})),
            outputs,
            text_refs: true,
        }
    }

    #[test]
    fn templates_small_models_write_stand_for_their_values() {
        let mut s = Scope {
            data: Some(json!({"title": "Crème Brûlée", "n": 3, "list": [1, 2]})),
            outputs: HashMap::new(),
            text_refs: true,
        };
        let v = json!({
            "text": "{{title}}",
            "again": "{{ input.data.title }}",
            "list": "{{list}}",
            "sentence": "Make {{n}} of {{title}}",
            "unknown": "{{nope}} stays",
            "literal": "a {{ b c }} d",
            "as_text": "{\\$ref: 'input.data.title'}",
            "as_json_text": "{\"$ref\": \"title\"}",
            "bare": "input.data.title",
            "bare_short": "input.n",
            "bare_unknown": "input.nope",
            "named": "{title}",
            "positional": "{1}",
            "not_a_field": "{nope}",
        });
        assert!(contains_ref(&v, true));
        assert_eq!(
            resolve(&v, &s).unwrap(),
            json!({
                "text": "Crème Brûlée",
                "again": "Crème Brûlée",
                "list": [1, 2],
                "sentence": "Make 3 of Crème Brûlée",
                "unknown": "{{nope}} stays",
                "literal": "a {{ b c }} d",
                "as_text": "Crème Brûlée",
                "as_json_text": "Crème Brûlée",
                "bare": "Crème Brûlée",
                "bare_short": 3,
                "bare_unknown": "input.nope",
                "named": "Crème Brûlée",
                "positional": 3,
                "not_a_field": "{nope}",
            })
        );
        // Outside json mode text is text: a template meant for a tool reaches it as written.
        s.text_refs = false;
        assert!(!contains_ref(&v, false));
        assert_eq!(resolve(&v, &s).unwrap(), v);
    }

    #[test]
    fn resolves_data_and_step_paths_anywhere_in_a_value() {
        let s = scope();
        let v = json!({
            "csv": {"$ref": "input.data.csv"},
            "n": [{"$ref": "input.data.nested.list[1]"}, {"$ref": "steps.2.output.rows.0.region"}],
            "short": {"$ref": "steps.2.count"},
            "keep": {"$ref": "x", "other": 1},
        });
        assert_eq!(
            resolve(&v, &s).unwrap(),
            json!({"csv": "a,b\n1,2", "n": [20, "West"], "short": 1, "keep": {"$ref": "x", "other": 1}})
        );
    }

    #[test]
    fn unknown_paths_say_what_exists() {
        let s = scope();
        let e = resolve(&json!({"$ref": "input.data.tsv"}), &s).unwrap_err();
        assert!(
            e.contains("no 'tsv' at the root; its fields are: csv, nested"),
            "{e}"
        );
        let e = resolve(&json!({"$ref": "steps.5.output"}), &s).unwrap_err();
        assert!(
            e.contains("step 5 has no output (steps with an output: 2)"),
            "{e}"
        );
        let e = resolve(&json!({"$ref": "csv"}), &s).unwrap_err();
        assert!(e.contains("starts with input.data or steps"), "{e}");
        // The shortened forms small models write still name the data.
        assert_eq!(
            resolve(&json!({"$ref": "data.csv"}), &s).unwrap(),
            "a,b\n1,2"
        );
        assert_eq!(
            resolve(&json!({"$ref": "input.csv"}), &s).unwrap(),
            "a,b\n1,2"
        );
    }

    #[test]
    fn large_values_become_previews_with_their_reference() {
        let rows: Vec<Value> = (0..1000)
            .map(|i| json!({"id": i, "name": format!("row {i}")}))
            .collect();
        let v = json!({"rows": rows, "count": 1000});
        let p = for_model(&v, "steps.3.output", 4096);
        assert!(json_len(&p) < 4096, "{}", json_len(&p));
        assert_eq!(p["ref"], json!({"$ref": "steps.3.output"}));
        assert_eq!(p["size_bytes"], json_len(&v));
        assert_eq!(p["fields"]["count"], 1000);
        assert_eq!(
            p["fields"]["rows"]["ref"],
            json!({"$ref": "steps.3.output.rows"})
        );
        assert_eq!(p["fields"]["rows"]["length"], 1000);
        assert_eq!(
            p["fields"]["rows"]["first_item"],
            json!({"id": 0, "name": "row 0"})
        );
        // Small values are untouched.
        assert_eq!(
            for_model(&json!([1, 2]), "steps.1.output", 4096),
            json!([1, 2])
        );
    }

    #[test]
    fn large_data_fields_are_previewed_and_small_ones_kept() {
        let big = "x".repeat(10_000);
        let d = data_for_model(&json!({"csv": big, "region": "West"}), 4096);
        assert_eq!(d["region"], "West");
        assert_eq!(d["csv"]["ref"], json!({"$ref": "input.data.csv"}));
        assert_eq!(d["csv"]["length"], 10_000);
        assert_eq!(d["csv"]["start"].as_str().unwrap().len(), PREVIEW_CHARS);
    }
}
