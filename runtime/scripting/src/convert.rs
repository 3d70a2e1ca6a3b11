//! JSON values to Rhai values and back. Written by hand rather than through Rhai's serde
//! support so that every case is ours to decide: which numbers become integers, what happens
//! to a value JSON cannot hold, and how deep a script-built value may nest.

use rhai::{Array, Dynamic, Map};
use serde_json::{Map as JsonMap, Number, Value};

/// Deeper values are refused: converting (and later dropping) them recurses, and a script can
/// build a value nested a hundred thousand levels deep in a short loop.
pub const MAX_DEPTH: usize = 128;

pub fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            // u64 beyond i64 and fractions: Rhai's only other number type.
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect::<Array>()),
        Value::Object(map) => Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect::<Map>(),
        ),
    }
}

/// `()` becomes `null` here; callers that give `()` a meaning of its own check it first.
pub fn to_json(value: &Dynamic) -> Result<Value, String> {
    to_json_at(value, 0)
}

fn to_json_at(value: &Dynamic, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the value is nested deeper than {MAX_DEPTH} levels"
        ));
    }
    // Captured variables of closures are shared cells; read through them. Everything else
    // is read in place: cloning each level would copy a subtree once per level above it.
    let flat;
    let value = if value.is_shared() {
        flat = value.flatten_clone();
        &flat
    } else {
        value
    };
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(f) = value.as_float() {
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("the number {f} cannot be represented in JSON"));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Ok(s) = value.clone().into_immutable_string() {
        return Ok(Value::String(s.to_string()));
    }
    if let Some(items) = value.read_lock::<Array>() {
        return items
            .iter()
            .map(|item| to_json_at(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(bytes) = value.read_lock::<rhai::Blob>() {
        return Ok(Value::Array(
            bytes.iter().map(|b| Value::Number((*b).into())).collect(),
        ));
    }
    if let Some(map) = value.read_lock::<Map>() {
        let mut out = JsonMap::with_capacity(map.len());
        for (k, v) in map.iter() {
            out.insert(k.to_string(), to_json_at(v, depth + 1)?);
        }
        return Ok(Value::Object(out));
    }
    Err(format!(
        "a value of type {} cannot be converted to JSON",
        value.type_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips() {
        let v = json!({"a": [1, 2.5, "x", true, null, {"b": {}}], "big": 18446744073709551615u64});
        let back = to_json(&to_dynamic(&v)).unwrap();
        assert_eq!(back["a"], v["a"]);
        assert_eq!(back["big"], json!(18446744073709551615.0));
    }

    #[test]
    fn shared_values_are_read_through() {
        let shared = Dynamic::from_array(vec![Dynamic::from_int(1)]).into_shared();
        assert_eq!(to_json(&shared).unwrap(), json!([1]));
    }

    #[test]
    fn non_finite_and_deep_values_are_refused() {
        assert!(to_json(&Dynamic::from_float(f64::NAN))
            .unwrap_err()
            .contains("cannot be represented"));
        let mut v = Dynamic::UNIT;
        for _ in 0..200 {
            v = Dynamic::from_array(vec![v]);
        }
        assert!(to_json(&v).unwrap_err().contains("deeper than 128"));
    }
}
