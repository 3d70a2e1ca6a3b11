//! Whole-document transformations: flatten, unflatten, deep merge and diff.

use leforge_forgehook_sdk::Error;
use serde_json::{Map, Value};

use crate::paths;
use crate::{Change, ChangeOp};

pub fn flatten(data: &Value, separator: &str) -> Map<String, Value> {
    let mut out = Map::new();
    flatten_into(data, None, separator, &mut out);
    out
}

fn flatten_into(
    value: &Value,
    prefix: Option<&str>,
    separator: &str,
    out: &mut Map<String, Value>,
) {
    let join = |key: &str| match prefix {
        Some(p) => format!("{p}{separator}{key}"),
        None => key.to_string(),
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten_into(v, Some(&join(k)), separator, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(v, Some(&join(&i.to_string())), separator, out);
            }
        }
        // Leaves, and empty containers (kept so that unflatten restores them). A top-level
        // empty container has no key and flattens to nothing.
        leaf => {
            if let Some(p) = prefix {
                out.insert(p.to_string(), leaf.clone());
            }
        }
    }
}

pub fn unflatten(flat: Map<String, Value>, separator: &str) -> Result<Value, Error> {
    let mut root = Map::new();
    for (key, value) in flat {
        let parts: Vec<&str> = key.split(separator).collect();
        let Some((last, parents)) = parts.split_last() else {
            continue;
        };
        let mut current = &mut root;
        for (depth, part) in parents.iter().enumerate() {
            let slot = current
                .entry((*part).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            current = match slot {
                Value::Object(map) => map,
                _ => {
                    return Err(Error::invalid_input(format!(
                        "key `{key}` conflicts with key `{}`, which holds a value rather than an object",
                        parts[..=depth].join(separator)
                    )))
                }
            };
        }
        if current.contains_key(*last) {
            return Err(Error::invalid_input(format!(
                "key `{key}` conflicts with another key that nests under it"
            )));
        }
        current.insert((*last).to_string(), value);
    }
    Ok(arrays_from_index_objects(Value::Object(root)))
}

/// Turns every object whose keys are exactly `0`..`n-1` (in any order) into an array.
fn arrays_from_index_objects(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let n = map.len();
            let mut slots: Vec<Option<Value>> = vec![None; n];
            let mut is_array = n > 0;
            let converted: Vec<(String, Value)> = map
                .into_iter()
                .map(|(k, v)| (k, arrays_from_index_objects(v)))
                .collect();
            for (k, _) in &converted {
                // "01" or "+1" are keys, not indices: they would not round-trip.
                let canonical = k
                    .parse::<usize>()
                    .ok()
                    .filter(|i| i.to_string() == *k && *i < n);
                match canonical {
                    Some(i) if slots[i].is_none() => slots[i] = Some(Value::Null),
                    _ => {
                        is_array = false;
                        break;
                    }
                }
            }
            if is_array {
                let mut items = vec![Value::Null; n];
                for (k, v) in converted {
                    if let Ok(i) = k.parse::<usize>() {
                        items[i] = v;
                    }
                }
                Value::Array(items)
            } else {
                Value::Object(converted.into_iter().collect())
            }
        }
        other => other,
    }
}

pub fn deep_merge(target: &mut Value, source: Value, concat_arrays: bool) {
    match (target, source) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, v) in s {
                match t.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v, concat_arrays),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(s)) if concat_arrays => t.extend(s),
        (t, s) => *t = s,
    }
}

/// Equality where numbers compare by value, so `1` and `1.0` are the same.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

pub fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                let p = paths::push_key(path, k);
                match a.get(k) {
                    Some(av) => diff(&p, bv, av, out),
                    None => out.push(Change {
                        path: p,
                        op: ChangeOp::Removed,
                        before: Some(bv.clone()),
                        after: None,
                    }),
                }
            }
            for (k, av) in a {
                if !b.contains_key(k) {
                    out.push(Change {
                        path: paths::push_key(path, k),
                        op: ChangeOp::Added,
                        before: None,
                        after: Some(av.clone()),
                    });
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for i in 0..b.len().max(a.len()) {
                let p = paths::push_index(path, i);
                match (b.get(i), a.get(i)) {
                    (Some(bv), Some(av)) => diff(&p, bv, av, out),
                    (Some(bv), None) => out.push(Change {
                        path: p,
                        op: ChangeOp::Removed,
                        before: Some(bv.clone()),
                        after: None,
                    }),
                    (None, Some(av)) => out.push(Change {
                        path: p,
                        op: ChangeOp::Added,
                        before: None,
                        after: Some(av.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (b, a) => {
            if !same(b, a) {
                out.push(Change {
                    path: path.to_string(),
                    op: ChangeOp::Changed,
                    before: Some(b.clone()),
                    after: Some(a.clone()),
                });
            }
        }
    }
}
