//! `yaml_to_json` and `json_to_yaml`.

use leforge_forgehook_sdk::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::xml::DataOutput;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct YamlToJsonInput {
    /// The YAML text (YAML 1.2; several documents may be separated by '---').
    pub yaml: String,
}

pub fn yaml_to_json(input: YamlToJsonInput) -> Result<DataOutput, Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_str(&input.yaml) {
        let doc = serde_norway::Value::deserialize(de)
            .map_err(|e| Error::invalid_input(format!("invalid YAML: {e}")))?;
        docs.push(to_json(doc)?);
    }
    let data = match docs.len() {
        0 => Value::Null,
        1 => docs.pop().unwrap_or(Value::Null),
        _ => Value::Array(docs),
    };
    Ok(DataOutput { data })
}

/// YAML allows what JSON does not (non-string keys, tags, NaN); map them to the nearest
/// JSON rather than failing on documents that are otherwise fine.
fn to_json(v: serde_norway::Value) -> Result<Value, Error> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    // .nan and .inf have no JSON number; keep them readable.
                    None => Value::String(n.to_string()),
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match to_json(k)? {
                    Value::String(s) => s,
                    Value::Null => "null".to_string(),
                    other => other.to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => to_json(tagged.value)?,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonToYamlInput {
    /// Any JSON value.
    pub data: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct YamlOutput {
    /// The YAML document.
    pub yaml: String,
}

pub fn json_to_yaml(input: JsonToYamlInput) -> Result<YamlOutput, Error> {
    let yaml = serde_norway::to_string(&input.data)
        .map_err(|e| Error::new(Error::INTERNAL, format!("writing YAML: {e}")))?;
    Ok(YamlOutput { yaml })
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::json;

    #[test]
    fn yaml_becomes_json() {
        let yaml = "name: app\nport: 8080\nratio: 0.5\non: true\nzip: '007'\ntags: [a, b]\n1: one\nnested:\n  key: ~\n";
        let out = call("yaml_to_json", json!({"yaml": yaml})).unwrap();
        assert_eq!(
            out["data"],
            json!({"name": "app", "port": 8080, "ratio": 0.5, "on": true, "zip": "007",
                   "tags": ["a", "b"], "1": "one", "nested": {"key": null}})
        );
        let out = call("yaml_to_json", json!({"yaml": "a: 1\n---\nb: 2\n"})).unwrap();
        assert_eq!(out["data"], json!([{"a": 1}, {"b": 2}]));
        let out = call("yaml_to_json", json!({"yaml": ""})).unwrap();
        assert_eq!(out["data"], json!(null));
    }

    #[test]
    fn malformed_yaml_is_reported() {
        let (code, msg) = fail("yaml_to_json", json!({"yaml": "a: [1, 2\nb: 3"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("invalid YAML: "), "{msg}");
        assert!(msg.contains("line"), "{msg}");
        let (code, _) = fail("yaml_to_json", json!({"yaml": ["x"]}));
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn json_becomes_yaml_and_back() {
        let data = json!({"name": "app", "list": [1, "two", null], "zip": "007", "yes": "true"});
        let out = call("json_to_yaml", json!({"data": data})).unwrap();
        assert_eq!(
            out["yaml"],
            "name: app\nlist:\n- 1\n- two\n- null\nzip: '007'\nyes: 'true'\n"
        );
        let back = call("yaml_to_json", json!({"yaml": out["yaml"]})).unwrap();
        assert_eq!(back["data"], data);
    }
}
