//! JSON tool mode: no `tools` array. The tools are described in a short preamble after the
//! agent's system prompt, and every reply is one JSON action object, constrained by the
//! provider's structured-output feature where it has one:
//!
//! `{"action": "call_tools", "calls": [{"tool": <name>, "arguments": {…}}, …]}` or
//! `{"action": "final_answer", "answer": <any JSON>}`.
//!
//! Small local models follow a constrained schema far better than their chat template's
//! function calling, which lets them answer in prose instead of calling anything.

use leforge_core::llm::{ToolCall, ToolSpec};
use serde_json::{json, Map, Value};

/// More endpoints than this and the preamble lists each as one short line.
pub const COMPACT_OVER: usize = 12;

/// What one reply asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    Calls(Vec<ToolCall>),
    Answer(Value),
}

/// How references are explained, in both modes.
pub const REFS_NOTE: &str = "Long values need not be copied: {\"$ref\": \"input.data.<field>\"} stands for a \
field of the data, {\"$ref\": \"steps.<n>.output.<field>\"} for a field of the result of step n; use one in place of \
any argument value or as the answer.";

/// The preamble that follows the agent's system prompt in json mode. Short on purpose: a
/// small model on a CPU reads it on every turn, and follows a few plain rules best.
pub fn preamble(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "Reply with exactly one JSON object:\n\
         {\"action\": \"call_tools\", \"calls\": [{\"tool\": \"<tool name>\", \"arguments\": {...}}]} calls tools; their results come back to you.\n\
         {\"action\": \"final_answer\", \"answer\": <value>} ends the task; the answer is the result as JSON.\n",
    );
    if tools.is_empty() {
        return s;
    }
    s.push_str("Tools (arguments marked ? are optional):\n");
    let compact = tools.len() > COMPACT_OVER;
    for t in tools {
        let desc = first_sentence(&t.description, if compact { 70 } else { 200 });
        s.push_str(&format!(
            "- {}({}): {}\n",
            t.name,
            signature(t.parameters()),
            desc
        ));
    }
    s.push_str(
        "Rules: do not convert, hash, encode, parse dates or calculate yourself: call the tool \
         that does it, with the values from the data. As soon as a result answers the task, \
         reply with final_answer and that result's value.\n",
    );
    s.push_str(REFS_NOTE);
    s.push('\n');
    s
}

/// `csv: string, delimiter?: string, mode?: "a"|"b"` from an arguments schema.
pub fn signature(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    props
        .iter()
        .map(|(name, p)| {
            let opt = if required.contains(&name.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{name}{opt}: {}", type_of(p))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_of(p: &Value) -> String {
    if let Some(e) = p.get("enum").and_then(Value::as_array) {
        return e.iter().map(Value::to_string).collect::<Vec<_>>().join("|");
    }
    if let Some(c) = p.get("const") {
        return c.to_string();
    }
    match p.get("type") {
        Some(Value::String(t)) if t == "array" => match p.get("items") {
            Some(items) => format!("array of {}", type_of(items)),
            None => "array".into(),
        },
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ => {
            for key in ["anyOf", "oneOf"] {
                if let Some(alts) = p.get(key).and_then(Value::as_array) {
                    return alts.iter().map(type_of).collect::<Vec<_>>().join("|");
                }
            }
            "any".into()
        }
    }
}

/// The first sentence of a description, at most `max` characters.
fn first_sentence(text: &str, max: usize) -> String {
    let text = text.trim();
    let end = text
        .match_indices(". ")
        .map(|(i, _)| i + 1)
        .find(|&i| {
            // Not an abbreviation such as "e.g." or "i.e.".
            !text[..i].ends_with("e.g.") && !text[..i].ends_with("i.e.")
        })
        .unwrap_or(text.len());
    let sentence = &text[..end];
    if sentence.chars().count() <= max {
        sentence.to_string()
    } else {
        let cut: String = sentence.chars().take(max.saturating_sub(3)).collect();
        format!("{}...", cut.trim_end())
    }
}

/// The schema every reply is constrained to. Each call's `arguments` follows its tool's own
/// argument schema, reduced to what grammar-based decoders support, with a reference object
/// accepted in place of any argument.
pub fn reply_schema(tools: &[ToolSpec]) -> Value {
    let answer = json!({
        "type": "object",
        "properties": {"action": {"const": "final_answer"}, "answer": any_value()},
        "required": ["action", "answer"],
    });
    if tools.is_empty() {
        return answer;
    }
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "tool": {"const": t.name},
                    "arguments": arguments_schema(t.parameters()),
                },
                "required": ["tool", "arguments"],
            })
        })
        .collect();
    json!({
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "action": {"const": "call_tools"},
                    "calls": {"type": "array", "minItems": 1, "items": {"anyOf": calls}},
                },
                "required": ["action", "calls"],
            },
            answer,
        ]
    })
}

/// A tool's arguments schema for the decoder: properties with their types (and enums), and
/// the required list. Formats, patterns, bounds and `$ref`s are dropped: not every decoder
/// compiles them, and the runtime validates the real schema before any call anyway.
fn arguments_schema(schema: &Value) -> Value {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return json!({"type": "object"});
    };
    let mut out = Map::new();
    for (name, p) in props {
        // A reference object is accepted wherever a value is (an any-typed value already
        // includes objects).
        let value = plain(p);
        let value = if value == any_value() {
            value
        } else {
            json!({"anyOf": [value, {"type": "object"}]})
        };
        out.insert(name.clone(), value);
    }
    let mut s = Map::new();
    s.insert("type".into(), json!("object"));
    s.insert("properties".into(), Value::Object(out));
    if let Some(r) = schema.get("required").filter(|r| r.is_array()) {
        s.insert("required".into(), r.clone());
    }
    Value::Object(s)
}

/// Any JSON value, spelled out. Not `{}`: llama.cpp-style grammar converters read an empty
/// schema as "an object", and one of them fails outright on array `items: {}`, dropping the
/// whole constraint without a word.
fn any_value() -> Value {
    json!({"anyOf": [
        {"type": "string"}, {"type": "number"}, {"type": "boolean"},
        {"type": "object"}, {"type": "array"}, {"type": "null"}
    ]})
}

/// The type and enum of a property (and of array items), nothing else; [`any_value`] when
/// the schema says nothing a decoder can use.
fn plain(p: &Value) -> Value {
    let mut out = Map::new();
    if let Some(e) = p.get("enum").filter(|e| e.is_array()) {
        out.insert("enum".into(), e.clone());
        return Value::Object(out);
    }
    if let Some(c) = p.get("const") {
        out.insert("const".into(), c.clone());
        return Value::Object(out);
    }
    match p.get("type") {
        Some(t @ Value::String(s)) => {
            out.insert("type".into(), t.clone());
            // Items only when they say something: a bare array is any array.
            if let Some(items) = p.get("items").map(plain).filter(|i| *i != any_value()) {
                if s == "array" {
                    out.insert("items".into(), items);
                }
            }
        }
        Some(Value::Array(ts)) => {
            // `["string", "null"]` and the like: any of the listed types.
            let alts: Vec<Value> = ts.iter().map(|t| json!({"type": t})).collect();
            out.insert("anyOf".into(), Value::Array(alts));
        }
        _ => {
            for key in ["anyOf", "oneOf"] {
                if let Some(alts) = p.get(key).and_then(Value::as_array) {
                    let alts: Vec<Value> = alts.iter().map(plain).collect();
                    if alts.iter().any(|a| *a == any_value()) {
                        return any_value();
                    }
                    out.insert("anyOf".into(), Value::Array(alts));
                    return Value::Object(out);
                }
            }
            return any_value();
        }
    }
    Value::Object(out)
}

/// Reads a reply. The error says what is wrong, for the one corrective message.
pub fn parse_reply(
    text: &str,
    offered: &dyn Fn(&str) -> bool,
    first_id: usize,
) -> Result<Action, String> {
    let value = crate::output::find_json(text)
        .ok_or_else(|| "the reply is not a JSON object".to_string())?;
    let Value::Object(mut m) = value else {
        return Err("the reply is not a JSON object".into());
    };
    match m.get("action").and_then(Value::as_str) {
        Some("final_answer") => match m.remove("answer") {
            Some(a) => Ok(Action::Answer(a)),
            None => Err("a final_answer needs an \"answer\"".into()),
        },
        Some("call_tools") => {
            let calls = match m.remove("calls") {
                Some(Value::Array(c)) if !c.is_empty() => c,
                // A single call object where a list belongs.
                Some(Value::Object(c)) => vec![Value::Object(c)],
                _ => return Err("call_tools needs a non-empty \"calls\" array".into()),
            };
            let mut out = Vec::with_capacity(calls.len());
            for (i, c) in calls.into_iter().enumerate() {
                let Value::Object(mut c) = c else {
                    return Err(format!("calls[{i}] is not an object"));
                };
                let Some(Value::String(name)) = c.remove("tool") else {
                    return Err(format!("calls[{i}] needs a \"tool\" name"));
                };
                if !offered(&name) {
                    return Err(format!("calls[{i}]: '{name}' is not one of the tools"));
                }
                let arguments = match c.remove("arguments") {
                    Some(a @ Value::Object(_)) => a,
                    None | Some(Value::Null) => json!({}),
                    Some(_) => return Err(format!("calls[{i}].arguments must be an object")),
                };
                out.push(ToolCall {
                    id: format!("call_{}", first_id + i),
                    name,
                    arguments,
                    recovered: false,
                });
            }
            Ok(Action::Calls(out))
        }
        Some(other) => Err(format!(
            "\"action\" is '{other}'; it must be \"call_tools\" or \"final_answer\""
        )),
        None => Err("the reply has no \"action\"".into()),
    }
}

/// One tool result as the plain message text json mode sends back.
pub fn result_text(step: Option<i32>, tool: &str, shown: &Value, is_error: bool) -> String {
    let what = match step {
        Some(n) => format!("step {n} ({tool})"),
        None => format!("the call of {tool}"),
    };
    if is_error {
        format!("Result of {what}: ERROR {shown}")
    } else {
        format!("Result of {what}: {shown}")
    }
}

/// What follows the results: the model is reminded to stop once it has the answer, which
/// small models otherwise forget, calling more tools after the one that did the task.
pub const AFTER_RESULTS: &str =
    "If this answers the task, reply {\"action\": \"final_answer\", \"answer\": <the part of the \
result the task asks for>} now; call another tool only if the task needs more.";

/// What follows results of which one is an error: small models otherwise take the error for
/// the answer (`"answer": "ERROR"`) instead of fixing the call.
pub const AFTER_ERROR: &str =
    "A call failed: read its error and call the tool again with corrected arguments (a value \
from the data is passed as {\"$ref\": \"input.data.<field>\"}); reply with final_answer only \
if the task cannot be done.";

/// Sent once when a json-mode model answers before calling any tool although it has some:
/// small models answer from memory (a made-up base64 decoding, a miscounted CSV) when a tool
/// would have computed it. The tools whose names and descriptions share the most words with
/// the task are named, since a long list is where a small model loses them. A model that
/// needs no tool sends its answer again.
pub fn check_toolless(task: &str, data: Option<&Value>, tools: &[ToolSpec]) -> String {
    let likely = likely_tools(task, tools, 3);
    let named = if likely.is_empty() {
        String::new()
    } else {
        format!(" Tools that may do it: {}.", likely.join(", "))
    };
    // A ready call of the likeliest tool, with the data's fields as references: a small
    // model copies an example far more readily than it composes one.
    let example = likely
        .first()
        .and_then(|name| tools.iter().find(|t| t.name == *name))
        .map(|t| {
            let call = json!({"action": "call_tools", "calls": [
                {"tool": t.name, "arguments": example_arguments(t.parameters(), data)}
            ]});
            format!(" For example: {call}")
        })
        .unwrap_or_default();
    format!(
        "You answered without calling a tool.{named} If a tool can compute or look up this answer, \
         call it now; a value from the data is passed as {{\"$ref\": \"input.data.<field>\"}}.{example} \
         If no tool can, send the same final_answer again."
    )
}

/// The line that follows the task in json mode when some tools match its words, or `None`.
pub fn task_hint(task: &str, tools: &[ToolSpec]) -> Option<String> {
    let likely = likely_tools(task, tools, 3);
    (!likely.is_empty()).then(|| format!("Tools that may fit: {}.", likely.join(", ")))
}

/// Arguments for a tool's required parameters: a data field of the same name (or the only
/// data field) as a reference, else a placeholder naming the type.
fn example_arguments(schema: &Value, data: Option<&Value>) -> Value {
    let fields: Vec<&String> = data
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let props = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut args = Map::new();
    for name in required {
        let value = if fields.iter().any(|f| f.as_str() == name) {
            json!({"$ref": format!("input.data.{name}")})
        } else if fields.len() == 1 {
            json!({"$ref": format!("input.data.{}", fields[0])})
        } else {
            let kind = props
                .and_then(|p| p.get(name))
                .map(type_of)
                .unwrap_or_else(|| "value".into());
            json!(format!("<{kind}>"))
        };
        args.insert(name.to_string(), value);
    }
    Value::Object(args)
}

/// Words that say nothing about which tool fits.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "from", "this", "that", "with", "into", "what", "how", "many", "are",
    "there", "does", "return", "answer", "give", "get", "each", "every", "all", "its", "their",
    "json", "object", "value", "values", "data", "field", "text",
];

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 3)
        .map(|w| w.to_lowercase())
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
}

/// Whether two words are forms of one (`slug`/`slugify`, `decode`/`decoding`): one is a
/// prefix of the other, or they share their first five letters.
fn related(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short == long {
        return true;
    }
    let prefix = |n: usize| short.chars().take(n).eq(long.chars().take(n));
    (short.chars().count() >= 4 && long.starts_with(short))
        || (short.chars().count() >= 5 && prefix(5))
}

/// Up to `n` tool names ranked by the task's words found in their endpoint name (twice the
/// weight), ForgeHook id and description, matched as [`related`] words.
pub fn likely_tools<'t>(task: &str, tools: &'t [ToolSpec], n: usize) -> Vec<&'t str> {
    let wanted: Vec<String> = {
        let mut w: Vec<String> = words(task).collect();
        w.sort();
        w.dedup();
        w
    };
    let found = |text: &str| -> Vec<String> { words(text).collect() };
    let mut scored: Vec<(usize, &str)> = tools
        .iter()
        .map(|t| {
            // `<forgehook>__<endpoint>`: the endpoint says what it does; the ForgeHook id is
            // a namespace (`string-utils`), worth no more than the description.
            let (hook, endpoint) = t.name.split_once("__").unwrap_or(("", &t.name));
            let (endpoint, hook, desc) = (found(endpoint), found(hook), found(&t.description));
            let has = |list: &[String], w: &str| list.iter().any(|x| related(x, w));
            let score = wanted
                .iter()
                .map(|w| {
                    2 * usize::from(has(&endpoint, w))
                        + usize::from(has(&hook, w))
                        + usize::from(has(&desc, w))
                })
                .sum();
            (score, t.name.as_str())
        })
        .filter(|(score, _)| *score >= 2)
        .collect();
    // Stable: equal scores keep the catalogue's order.
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().take(n).map(|(_, name)| name).collect()
}

/// The corrective message after a reply that could not be used.
pub fn correction(problem: &str) -> String {
    format!(
        "Your reply could not be used: {problem}. Reply with exactly one JSON object: \
         {{\"action\": \"call_tools\", \"calls\": [{{\"tool\": \"<tool name>\", \"arguments\": {{...}}}}]}} \
         or {{\"action\": \"final_answer\", \"answer\": <the result>}}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_that_share_the_task_s_words_are_named() {
        let t = |name: &str, desc: &str| ToolSpec::new(name, desc, json!({"type": "object"}));
        let tools = vec![
            t("encoding-utils__base64_encode", "Encodes text as base64."),
            t("encoding-utils__base64_decode", "Decodes base64 to text."),
            t("crypto-utils__hash", "Hashes text with md5 or sha256."),
            t("string-utils__slugify", "Makes a URL slug."),
        ];
        let picked = likely_tools("Decode this base64 string to text.", &tools, 3);
        assert_eq!(picked[0], "encoding-utils__base64_decode");
        assert!(!picked.contains(&"string-utils__slugify"));
        assert!(likely_tools("Say hello.", &tools, 3).is_empty());
        // Word forms match: "slug" is the endpoint "slugify", above a tool that only shares
        // "URL".
        let mut more = tools.clone();
        more.insert(
            0,
            t(
                "encoding-utils__url_encode",
                "Percent-encodes text for use in a URL.",
            ),
        );
        let picked = likely_tools("Make a URL slug from the title.", &more, 3);
        assert_eq!(picked[0], "string-utils__slugify", "{picked:?}");
        assert_eq!(
            task_hint("Make a URL slug from the title.", &more).unwrap(),
            "Tools that may fit: string-utils__slugify, encoding-utils__url_encode."
        );
        assert!(related("decode", "decoding") && related("slug", "slugify"));
        assert!(!related("date", "data"));
        let data = json!({"encoded": "SGk="});
        let message = check_toolless("Decode this base64 string.", Some(&data), &tools);
        assert!(
            message.contains("encoding-utils__base64_decode"),
            "{message}"
        );

        // The likeliest tool comes with a ready call, the data wired in by reference.
        let decode = ToolSpec::new(
            "encoding-utils__base64_decode",
            "Decodes base64 to text.",
            json!({"type": "object", "properties": {"text": {"type": "string"}, "url_safe": {"type": "boolean"}},
                   "required": ["text"]}),
        );
        let message = check_toolless("Decode this base64 string.", Some(&data), &[decode]);
        assert!(
            message.contains(r#"{"action":"call_tools","calls":[{"tool":"encoding-utils__base64_decode","arguments":{"text":{"$ref":"input.data.encoded"}}}]}"#),
            "{message}"
        );
    }

    fn tool() -> ToolSpec {
        ToolSpec::new(
            "data-transform__csv_to_json",
            "Converts CSV text to JSON rows. The first line is the header, e.g. a,b.",
            json!({
                "type": "object",
                "properties": {
                    "csv": {"type": "string", "minLength": 1},
                    "delimiter": {"type": "string", "pattern": "^.$"},
                    "mode": {"enum": ["rows", "columns"]},
                    "skip": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                },
                "required": ["csv"],
            }),
        )
    }

    #[test]
    fn preamble_lists_each_tool_with_a_compact_signature() {
        let p = preamble(&[tool()]);
        assert!(
            p.contains(r#"- data-transform__csv_to_json(csv: string, delimiter?: string, mode?: "rows"|"columns", skip?: array of integer): Converts CSV text to JSON rows."#),
            "{p}"
        );
        assert!(p.contains("$ref"));
    }

    #[test]
    fn reply_schema_pins_tool_names_and_argument_types() {
        let s = reply_schema(&[tool()]);
        let call = &s["anyOf"][0]["properties"]["calls"]["items"]["anyOf"][0];
        assert_eq!(
            call["properties"]["tool"],
            json!({"const": "data-transform__csv_to_json"})
        );
        let args = &call["properties"]["arguments"];
        assert_eq!(args["required"], json!(["csv"]));
        assert_eq!(
            args["properties"]["skip"],
            json!({"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "object"}]})
        );
        assert_eq!(
            args["properties"]["delimiter"],
            json!({"anyOf": [{"type": "string"}, {"type": "object"}]})
        );
        // The schema itself is valid and accepts both actions.
        let v = jsonschema::validator_for(&s).unwrap();
        assert!(v.is_valid(&json!({"action": "final_answer", "answer": [1]})));
        assert!(v.is_valid(&json!({"action": "call_tools", "calls": [
            {"tool": "data-transform__csv_to_json", "arguments": {"csv": {"$ref": "input.data.csv"}}}
        ]})));
        assert!(!v.is_valid(
            &json!({"action": "call_tools", "calls": [{"tool": "other", "arguments": {}}]})
        ));
    }

    /// No schema a grammar converter misreads: no empty schema (read as "an object"), no
    /// array `items` that is empty (one converter fails on it and drops the constraint).
    #[test]
    fn reply_schema_spells_out_any_value() {
        let t = ToolSpec::new(
            "json-utils__get",
            "Reads a value.",
            json!({"type": "object", "properties": {
                "data": {},
                "paths": {"type": "array", "items": {}},
                "columns": {"type": ["array", "null"]},
                "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            }, "required": ["data"]}),
        );
        let s = reply_schema(&[t]);
        fn walk(v: &Value, at: &str) {
            match v {
                Value::Object(m) => {
                    assert!(!m.is_empty(), "empty schema at {at}");
                    if let Some(items) = m.get("items") {
                        assert!(
                            items.as_object().is_some_and(|i| !i.is_empty()),
                            "empty items at {at}"
                        );
                    }
                    for (k, v) in m {
                        if k != "properties" && k != "const" {
                            walk(v, &format!("{at}.{k}"));
                        } else if k == "properties" {
                            for (name, p) in v.as_object().unwrap() {
                                walk(p, &format!("{at}.{name}"));
                            }
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, at)),
                _ => {}
            }
        }
        walk(&s, "$");
        let args = &s["anyOf"][0]["properties"]["calls"]["items"]["anyOf"][0]["properties"]
            ["arguments"]["properties"];
        assert_eq!(args["data"], any_value());
        assert_eq!(
            args["paths"],
            json!({"anyOf": [{"type": "array"}, {"type": "object"}]})
        );
        assert_eq!(
            args["limit"],
            json!({"anyOf": [{"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"type": "object"}]})
        );
        let v = jsonschema::validator_for(&s).unwrap();
        for answer in [
            json!("text"),
            json!(3),
            json!([1]),
            json!(null),
            json!({"a": 1}),
        ] {
            assert!(v.is_valid(&json!({"action": "final_answer", "answer": answer})));
        }
    }

    #[test]
    fn replies_parse_into_calls_or_an_answer() {
        let offered = |n: &str| n == "a__b";
        assert_eq!(
            parse_reply(r#"{"action":"final_answer","answer":42}"#, &offered, 1),
            Ok(Action::Answer(json!(42)))
        );
        let Ok(Action::Calls(calls)) = parse_reply(
            "```json\n{\"action\":\"call_tools\",\"calls\":[{\"tool\":\"a__b\",\"arguments\":{\"x\":1}}]}\n```",
            &offered,
            3,
        ) else {
            panic!("calls expected")
        };
        assert_eq!(calls[0].id, "call_3");
        assert_eq!(calls[0].arguments, json!({"x": 1}));
        assert_eq!(
            parse_reply(
                r#"{"action":"call_tools","calls":[{"tool":"nope","arguments":{}}]}"#,
                &offered,
                1
            ),
            Err("calls[0]: 'nope' is not one of the tools".into())
        );
        assert!(parse_reply("Sure! Here is how you do it in Python.", &offered, 1).is_err());
    }
}
