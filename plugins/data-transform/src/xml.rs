//! `xml_to_json` and `json_to_xml`, with the common "@attribute / #text" mapping so that
//! one is the inverse of the other.

use leforge_forgehook_sdk::Error;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const ATTR_PREFIX: char = '@';
const TEXT_KEY: &str = "#text";
/// Deeper documents are refused rather than risking the guest's stack.
const MAX_DEPTH: usize = 256;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XmlToJsonInput {
    /// The XML document.
    pub xml: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DataOutput {
    /// The converted document.
    pub data: Value,
}

/// An element being read: its attributes, text and children so far.
struct Open {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

impl Open {
    fn new(start: &BytesStart, reader: &Reader<&[u8]>) -> Result<Open, Error> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut fields = Map::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| xml_error(reader, &e.to_string()))?;
            let key = format!(
                "{ATTR_PREFIX}{}",
                String::from_utf8_lossy(attr.key.as_ref())
            );
            let value = attr
                .unescape_value()
                .map_err(|e| xml_error(reader, &e.to_string()))?;
            fields.insert(key, Value::String(value.into_owned()));
        }
        Ok(Open {
            name,
            fields,
            text: String::new(),
        })
    }

    /// Text only: a string; otherwise an object with the text under `#text`; empty: null.
    fn finish(self) -> Value {
        let text = self.text.trim();
        if self.fields.is_empty() {
            if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.to_string())
            }
        } else {
            let mut fields = self.fields;
            if !text.is_empty() {
                fields.insert(TEXT_KEY.into(), Value::String(text.to_string()));
            }
            Value::Object(fields)
        }
    }
}

/// Adds a child, turning a repeated name into an array.
fn add_child(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            fields.insert(name, value);
        }
    }
}

fn xml_error(reader: &Reader<&[u8]>, message: &str) -> Error {
    Error::invalid_input(format!(
        "invalid XML at byte {}: {message}",
        reader.buffer_position()
    ))
}

pub fn xml_to_json(input: XmlToJsonInput) -> Result<DataOutput, Error> {
    let mut reader = Reader::from_str(&input.xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| xml_error(&reader, &e.to_string()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(xml_error(&reader, "more than one root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(xml_error(
                        &reader,
                        &format!("elements nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(Open::new(&start, &reader)?);
            }
            Event::Empty(start) => {
                let open = Open::new(&start, &reader)?;
                let name = open.name.clone();
                close(&mut stack, &mut root, name, open.finish(), &reader)?;
            }
            Event::End(_) => {
                let Some(open) = stack.pop() else {
                    return Err(xml_error(&reader, "closing tag without an opening tag"));
                };
                let name = open.name.clone();
                close(&mut stack, &mut root, name, open.finish(), &reader)?;
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| xml_error(&reader, &e.to_string()))?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(xml_error(&reader, "text outside the root element")),
                }
            }
            Event::CData(c) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and doctypes carry no data.
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(xml_error(
            &reader,
            &format!("element <{}> is never closed", open.name),
        ));
    }
    let (name, value) =
        root.ok_or_else(|| Error::invalid_input("the XML document has no root element"))?;
    let mut data = Map::new();
    data.insert(name, value);
    Ok(DataOutput {
        data: Value::Object(data),
    })
}

fn close(
    stack: &mut [Open],
    root: &mut Option<(String, Value)>,
    name: String,
    value: Value,
    reader: &Reader<&[u8]>,
) -> Result<(), Error> {
    match stack.last_mut() {
        Some(parent) => add_child(&mut parent.fields, name, value),
        None if root.is_some() => return Err(xml_error(reader, "more than one root element")),
        None => *root = Some((name, value)),
    }
    Ok(())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonToXmlInput {
    /// The JSON to write. Keys starting with '@' become attributes, '#text' the text.
    pub data: Value,
    /// The root element's name. Default: the single key of `data` when it is an object with
    /// one key, else "root".
    #[serde(default)]
    pub root: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct XmlOutput {
    /// The XML document, without an XML declaration.
    pub xml: String,
}

pub fn json_to_xml(input: JsonToXmlInput) -> Result<XmlOutput, Error> {
    let (name, value) = match (input.root.as_deref(), &input.data) {
        (Some(root), data) => (root, data),
        (None, Value::Object(map)) if map.len() == 1 => match map.iter().next() {
            Some((key, value)) if !key.starts_with(ATTR_PREFIX) && key != TEXT_KEY => {
                (key.as_str(), value)
            }
            _ => ("root", &input.data),
        },
        (None, data) => ("root", data),
    };
    let mut out = String::new();
    if let Value::Array(items) = value {
        // A document has one root: a top-level list becomes <root><item/>...</root>.
        check_name(name)?;
        out.push_str(&format!("<{name}>"));
        for item in items {
            write_element(&mut out, "item", item, 1)?;
        }
        out.push_str(&format!("</{name}>"));
    } else {
        write_element(&mut out, name, value, 0)?;
    }
    Ok(XmlOutput { xml: out })
}

fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':');
    let rest_ok = chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
    if first_ok && rest_ok && !name.to_ascii_lowercase().starts_with("xml") {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{name:?} cannot be an XML element or attribute name"
        )))
    }
}

fn write_element(out: &mut String, name: &str, value: &Value, depth: usize) -> Result<(), Error> {
    if depth >= MAX_DEPTH {
        return Err(Error::invalid_input(format!(
            "data nests deeper than {MAX_DEPTH} levels"
        )));
    }
    check_name(name)?;
    match value {
        // An array is the same element repeated.
        Value::Array(items) => {
            for item in items {
                write_element(out, name, item, depth + 1)?;
            }
        }
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            for (key, v) in map {
                if let Some(attr) = key.strip_prefix(ATTR_PREFIX) {
                    check_name(attr)?;
                    out.push(' ');
                    out.push_str(attr);
                    out.push_str("=\"");
                    out.push_str(&quick_xml::escape::escape(scalar_text(v)?.as_str()));
                    out.push('"');
                }
            }
            let has_content = map
                .keys()
                .any(|k| !k.starts_with(ATTR_PREFIX) && !k.is_empty());
            if !has_content {
                out.push_str("/>");
                return Ok(());
            }
            out.push('>');
            for (key, v) in map {
                if key == TEXT_KEY {
                    out.push_str(&quick_xml::escape::escape(scalar_text(v)?.as_str()));
                } else if !key.starts_with(ATTR_PREFIX) {
                    write_element(out, key, v, depth + 1)?;
                }
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        scalar => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            out.push_str(&quick_xml::escape::escape(scalar_text(scalar)?.as_str()));
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
    Ok(())
}

fn scalar_text(v: &Value) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Bool(_) | Value::Number(_) => Ok(v.to_string()),
        _ => Err(Error::invalid_input(
            "attribute and #text values must be strings, numbers, booleans or null",
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::json;

    #[test]
    fn xml_becomes_json_with_attributes_text_and_repeats() {
        let xml = r#"<?xml version="1.0"?>
            <!-- orders -->
            <orders region="West">
              <order id="1"><amount>1500</amount><note>A &amp; B</note></order>
              <order id="2"><amount>1200</amount><note><![CDATA[<raw>]]></note></order>
              <empty/>
              <label lang="en">Hello</label>
            </orders>"#;
        let out = call("xml_to_json", json!({"xml": xml})).unwrap();
        assert_eq!(
            out["data"],
            json!({"orders": {
                "@region": "West",
                "order": [
                    {"@id": "1", "amount": "1500", "note": "A & B"},
                    {"@id": "2", "amount": "1200", "note": "<raw>"}
                ],
                "empty": null,
                "label": {"@lang": "en", "#text": "Hello"}
            }})
        );
    }

    #[test]
    fn malformed_xml_is_reported_with_a_position() {
        for (xml, expect) in [
            ("<a><b></a>", "invalid XML at byte"),
            ("<a>", "is never closed"),
            ("<a/><b/>", "more than one root element"),
            ("", "has no root element"),
            ("hello <a/>", "text outside the root element"),
        ] {
            let (code, msg) = fail("xml_to_json", json!({"xml": xml}));
            assert_eq!(code, "INVALID_INPUT", "{xml}");
            assert!(msg.contains(expect), "{xml}: {msg}");
        }
    }

    #[test]
    fn json_becomes_xml_and_back() {
        let data = json!({"orders": {
            "@region": "West & East",
            "order": [{"@id": "1", "amount": "1500"}, {"@id": "2", "amount": "<1200>"}],
            "empty": null,
            "label": {"@lang": "en", "#text": "Hi"}
        }});
        let out = call("json_to_xml", json!({"data": data})).unwrap();
        assert_eq!(
            out["xml"],
            "<orders region=\"West &amp; East\"><order id=\"1\"><amount>1500</amount></order>\
             <order id=\"2\"><amount>&lt;1200&gt;</amount></order><empty/>\
             <label lang=\"en\">Hi</label></orders>"
        );
        let back = call("xml_to_json", json!({"xml": out["xml"]})).unwrap();
        assert_eq!(back["data"], data);
    }

    #[test]
    fn json_to_xml_wraps_and_validates_names() {
        let out = call("json_to_xml", json!({"data": {"a": 1, "b": true}})).unwrap();
        assert_eq!(out["xml"], "<root><a>1</a><b>true</b></root>");
        let out = call("json_to_xml", json!({"data": [1, 2], "root": "n"})).unwrap();
        assert_eq!(out["xml"], "<n><item>1</item><item>2</item></n>");
        let (code, msg) = fail("json_to_xml", json!({"data": {"1bad": 1}}));
        assert_eq!(code, "INVALID_INPUT");
        assert_eq!(msg, "\"1bad\" cannot be an XML element or attribute name");
        let (code, _) = fail("json_to_xml", json!({"data": {"a": {"@x": [1]}}}));
        assert_eq!(code, "INVALID_INPUT");
    }
}
