//! Dot paths (`user.address.city`, `items[0].name`, `items.0.name`, `["key.with.dots"]`):
//! parsing, formatting, and reading, writing and removing the value a path names.
//!
//! `get`, `set`, `pick`, `omit` read them and `diff` writes them, so a path that `diff`
//! reports can be handed straight back to `get` or `set`.

use leforge_forgehook_sdk::Error;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// `.name`: a key of an object, or an index of an array when it is all digits.
    Name(String),
    /// `["name"]`: always a key.
    Key(String),
    /// `[3]`: always an array index.
    Index(usize),
}

impl Seg {
    /// The array index this segment can stand for.
    fn as_index(&self) -> Option<usize> {
        match self {
            Seg::Index(i) => Some(*i),
            Seg::Name(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().ok()
            }
            _ => None,
        }
    }

    /// The object key this segment can stand for.
    fn as_key(&self) -> Option<&str> {
        match self {
            Seg::Name(n) | Seg::Key(n) => Some(n),
            Seg::Index(_) => None,
        }
    }
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seg::Name(n) => f.write_str(n),
            Seg::Key(k) => write!(f, "[{}]", Value::from(k.as_str())),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn bad_path(path: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("invalid path `{path}`: {why}"))
}

/// Parses a dot path. The empty string (or `$`) is the whole document.
pub fn parse(path: &str) -> Result<Vec<Seg>, Error> {
    // A JSONPath-style `$` prefix, or jq's leading `.`, is what LLMs often write; either
    // means the root here too.
    let body = if path == "$" || path == "." {
        ""
    } else if let Some(rest) = path.strip_prefix("$.") {
        rest
    } else if path.starts_with("$[") {
        &path[1..]
    } else if let Some(rest) = path.strip_prefix('.').filter(|r| !r.starts_with('.')) {
        rest
    } else {
        path
    };
    let bytes = body.as_bytes();
    let mut segs = Vec::new();
    let mut i = 0;
    let mut expect_name = true;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => {
                let (seg, next) = parse_bracket(path, body, i)?;
                segs.push(seg);
                i = next;
                expect_name = false;
            }
            b'.' => {
                // `expect_name` is still set at the start and right after another dot.
                if expect_name || i + 1 == bytes.len() {
                    return Err(bad_path(
                        path,
                        "empty segment (two dots, or a dot at an end)",
                    ));
                }
                i += 1;
                expect_name = true;
            }
            b']' => return Err(bad_path(path, "`]` without a matching `[`")),
            _ => {
                if !expect_name {
                    return Err(bad_path(
                        path,
                        format!(
                            "expected `.` or `[` at character {}",
                            body[..i].chars().count()
                        ),
                    ));
                }
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b'.' | b'[' | b']') {
                    i += 1;
                }
                segs.push(Seg::Name(body[start..i].to_string()));
                expect_name = false;
            }
        }
    }
    Ok(segs)
}

/// Parses `[3]`, `["key"]` (JSON string escapes) or `['key']` starting at `start`; returns
/// the segment and the position after `]`.
fn parse_bracket(path: &str, body: &str, start: usize) -> Result<(Seg, usize), Error> {
    let rest = &body[start + 1..];
    if let Some(quoted) = rest.strip_prefix('"') {
        // Find the closing quote, skipping escaped characters.
        let mut escaped = false;
        for (j, c) in quoted.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                let literal = &rest[..j + 2];
                let key: String = serde_json::from_str(literal)
                    .map_err(|e| bad_path(path, format!("bad quoted key {literal}: {e}")))?;
                let after = start + 1 + j + 2;
                if body.as_bytes().get(after) != Some(&b']') {
                    return Err(bad_path(path, "expected `]` after a quoted key"));
                }
                return Ok((Seg::Key(key), after + 1));
            }
        }
        return Err(bad_path(path, "unterminated quoted key"));
    }
    if let Some(quoted) = rest.strip_prefix('\'') {
        let Some(end) = quoted.find("']") else {
            return Err(bad_path(path, "unterminated quoted key"));
        };
        return Ok((Seg::Key(quoted[..end].to_string()), start + 1 + 1 + end + 2));
    }
    let Some(end) = rest.find(']') else {
        return Err(bad_path(path, "`[` without a matching `]`"));
    };
    let inner = rest[..end].trim();
    let index = inner.parse::<usize>().map_err(|_| {
        bad_path(
            path,
            format!("`[{inner}]` is not an array index; write a non-negative integer, or quote a key as [\"{inner}\"]"),
        )
    })?;
    Ok((Seg::Index(index), start + 1 + end + 1))
}

/// Whether a key can be written as `.key` and read back as the same key.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && !key.starts_with('$') && !key.contains(['.', '[', ']', '"', '\''])
}

/// Appends one step to a path in the form `parse` reads back.
pub fn push_key(path: &str, key: &str) -> String {
    if is_plain_key(key) {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    } else {
        format!("{path}{}", Seg::Key(key.to_string()))
    }
}

pub fn push_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Renders a parsed path, e.g. for error messages.
pub fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        out = match seg {
            Seg::Index(i) => push_index(&out, *i),
            Seg::Name(n) if is_plain_key(n) || n.bytes().all(|b| b.is_ascii_digit()) => {
                if out.is_empty() {
                    n.clone()
                } else {
                    format!("{out}.{n}")
                }
            }
            Seg::Name(n) | Seg::Key(n) => push_key(&out, n),
        };
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn child<'a>(value: &'a Value, seg: &Seg) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(seg.as_key()?),
        Value::Array(items) => items.get(seg.as_index()?),
        _ => None,
    }
}

pub fn get<'a>(value: &'a Value, segs: &[Seg]) -> Option<&'a Value> {
    segs.iter().try_fold(value, |v, seg| child(v, seg))
}

/// Writes `new` at `segs`, creating missing objects and arrays on the way (an index segment
/// creates an array, a name an object). An index may be at most the array's length (which
/// appends); with `pad`, a larger one fills the gap with nulls.
pub fn set(root: &mut Value, segs: &[Seg], new: Value, pad: bool) -> Result<(), Error> {
    let Some((last, parents)) = segs.split_last() else {
        *root = new;
        return Ok(());
    };
    if root.is_null() {
        *root = empty_container_for(&segs[0]);
    }
    let mut current = root;
    for (depth, seg) in parents.iter().enumerate() {
        let slot = slot_mut(current, seg, &segs[..=depth], pad)?;
        if slot.is_null() {
            *slot = empty_container_for(&segs[depth + 1]);
        }
        current = slot;
    }
    *slot_mut(current, last, segs, pad)? = new;
    Ok(())
}

/// What a missing parent becomes: an array when the next step is an `[index]`.
fn empty_container_for(next: &Seg) -> Value {
    match next {
        Seg::Index(_) => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

/// The place `seg` names inside `container`, created as null when missing.
fn slot_mut<'a>(
    container: &'a mut Value,
    seg: &Seg,
    upto: &[Seg],
    pad: bool,
) -> Result<&'a mut Value, Error> {
    let parent = render(&upto[..upto.len() - 1]);
    let parent_name = if parent.is_empty() {
        "the root".to_string()
    } else {
        format!("`{parent}`")
    };
    let kind = type_name(container);
    match container {
        Value::Object(map) => match seg.as_key() {
            Some(key) => Ok(map.entry(key.to_string()).or_insert(Value::Null)),
            None => Err(Error::invalid_input(format!(
                "cannot set `{}`: {parent_name} is an object, not an array; use a key instead of {seg}",
                render(upto)
            ))),
        },
        Value::Array(items) => {
            let Some(index) = seg.as_index() else {
                return Err(Error::invalid_input(format!(
                    "cannot set `{}`: {parent_name} is an array; use an index such as [0]",
                    render(upto)
                )));
            };
            if index > items.len() && !pad {
                return Err(Error::invalid_input(format!(
                    "cannot set `{}`: index {index} is past the end of {parent_name} (length {}); use [{}] to append",
                    render(upto),
                    items.len(),
                    items.len()
                )));
            }
            if index >= items.len() {
                items.resize(index + 1, Value::Null);
            }
            Ok(&mut items[index])
        }
        _ => Err(Error::invalid_input(format!(
            "cannot set `{}`: {parent_name} is {kind}, which has no fields",
            render(upto)
        ))),
    }
}

/// Removes what `segs` names; returns whether something was there.
pub fn remove(root: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut current = root;
    for seg in parents {
        let next = match current {
            Value::Object(map) => seg.as_key().and_then(|k| map.get_mut(k)),
            Value::Array(items) => seg.as_index().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => return false,
        }
    }
    match current {
        Value::Object(map) => last.as_key().is_some_and(|k| map.shift_remove(k).is_some()),
        Value::Array(items) => match last.as_index() {
            Some(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Orders paths so that, among siblings of one array, higher indices come first: removing
/// them in this order does not shift the elements that later paths name.
pub fn removal_order(a: &[Seg], b: &[Seg]) -> std::cmp::Ordering {
    fn key(s: &Seg) -> (u8, usize, &str) {
        match s.as_index() {
            Some(i) => (0, i, ""),
            None => (1, 0, s.as_key().unwrap_or("")),
        }
    }
    let ka: Vec<_> = a.iter().map(key).collect();
    let kb: Vec<_> = b.iter().map(key).collect();
    kb.cmp(&ka)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Seg {
        Seg::Name(s.into())
    }

    #[test]
    fn parses_all_forms() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("$").unwrap(), vec![]);
        assert_eq!(parse("a.b").unwrap(), vec![name("a"), name("b")]);
        assert_eq!(
            parse("$.a[0].b").unwrap(),
            vec![name("a"), Seg::Index(0), name("b")]
        );
        assert_eq!(
            parse("items.0.name").unwrap(),
            vec![name("items"), name("0"), name("name")]
        );
        assert_eq!(parse("[2][3]").unwrap(), vec![Seg::Index(2), Seg::Index(3)]);
        assert_eq!(
            parse(r#"a["x.y"]['p q'].b"#).unwrap(),
            vec![
                name("a"),
                Seg::Key("x.y".into()),
                Seg::Key("p q".into()),
                name("b")
            ]
        );
        assert_eq!(
            parse(r#"["say \"hi\""]"#).unwrap(),
            vec![Seg::Key("say \"hi\"".into())]
        );
        assert_eq!(parse("a.[1]").unwrap(), vec![name("a"), Seg::Index(1)]);
        // jq's leading dot, as models write it.
        assert_eq!(parse(".a.b").unwrap(), vec![name("a"), name("b")]);
        assert_eq!(parse(".").unwrap(), vec![]);
        assert_eq!(
            parse("héllo wörld.x").unwrap(),
            vec![name("héllo wörld"), name("x")]
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        for (path, why) in [
            ("a..b", "empty segment (two dots, or a dot at an end)"),
            ("a.", "empty segment (two dots, or a dot at an end)"),
            ("..a", "empty segment (two dots, or a dot at an end)"),
            ("a[x]", "`[x]` is not an array index; write a non-negative integer, or quote a key as [\"x\"]"),
            ("a[-1]", "`[-1]` is not an array index; write a non-negative integer, or quote a key as [\"-1\"]"),
            ("a[0", "`[` without a matching `]`"),
            ("a]", "`]` without a matching `[`"),
            ("a[0]b", "expected `.` or `[` at character 4"),
            (r#"a["x"#, "unterminated quoted key"),
            (r#"a["x"0]"#, "expected `]` after a quoted key"),
        ] {
            assert_eq!(
                parse(path).unwrap_err(),
                Error::invalid_input(format!("invalid path `{path}`: {why}")),
                "{path}"
            );
        }
    }

    #[test]
    fn formats_paths_that_parse_back() {
        let p = push_key("", "a");
        let p = push_index(&p, 2);
        let p = push_key(&p, "x.y");
        let p = push_key(&p, "b");
        assert_eq!(p, r#"a[2]["x.y"].b"#);
        assert_eq!(
            parse(&p).unwrap(),
            vec![name("a"), Seg::Index(2), Seg::Key("x.y".into()), name("b")]
        );
        assert_eq!(push_key("", "$ref"), r#"["$ref"]"#);
        assert_eq!(push_key("", ""), r#"[""]"#);
    }
}
