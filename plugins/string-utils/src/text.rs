//! The text algorithms behind the endpoints, on plain `&str`s.

use serde_json::{Map, Value};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Letters that compatibility decomposition leaves alone but that have a conventional ASCII
/// spelling in slugs. Applied to lowercased characters.
fn ascii_spelling(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'ø' => "o",
        'đ' | 'ð' => "d",
        'ł' => "l",
        'ħ' => "h",
        'ı' => "i",
        'þ' => "th",
        _ => return None,
    })
}

pub fn slugify(text: &str) -> String {
    let mut slug = String::new();
    let mut pending_separator = false;
    // NFKD splits accented letters into base + combining mark (dropped below) and folds
    // compatibility forms (fullwidth letters, circled digits, ligatures) to plain ones.
    for c in text.nfkd() {
        // Apostrophes join a word ("don't" -> "dont") rather than split it.
        if is_combining_mark(c) || matches!(c, '\'' | '\u{2019}') {
            continue;
        }
        for lower in c.to_lowercase() {
            let spelled = ascii_spelling(lower);
            let mut push = |ch: char| {
                if ch.is_alphanumeric() {
                    if pending_separator && !slug.is_empty() {
                        slug.push('-');
                    }
                    pending_separator = false;
                    slug.push(ch);
                } else if !is_combining_mark(ch) {
                    pending_separator = true;
                }
            };
            match spelled {
                Some(s) => s.chars().for_each(&mut push),
                None => push(lower),
            }
        }
    }
    // NFKD also split Hangul syllables into jamo; recompose what is left.
    slug.nfc().collect()
}

/// Capitalizes the first letter of each whitespace-separated word and lowercases the rest,
/// keeping punctuation and the original spacing.
pub fn title_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        if c.is_whitespace() {
            word_start = true;
            out.push(c);
        } else if word_start && c.is_alphanumeric() {
            // A word starting with a digit ("2nd") is not capitalized inside.
            out.extend(c.to_uppercase());
            word_start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The first `n` characters of `s`.
pub fn char_prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Shortens `cut` (a prefix of `full`) so that it does not end inside a word, unless the
/// whole prefix is one word.
pub fn back_to_word_boundary<'a>(full: &str, cut: &'a str) -> &'a str {
    let next_is_break = full[cut.len()..]
        .chars()
        .next()
        .is_none_or(char::is_whitespace);
    if next_is_break {
        return cut.trim_end();
    }
    match cut.rfind(char::is_whitespace) {
        Some(i) if !cut[..i].trim_end().is_empty() => cut[..i].trim_end(),
        _ => cut,
    }
}

pub fn normalize_whitespace(text: &str, preserve_newlines: bool) -> String {
    if !preserve_newlines {
        return text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<String> = Vec::new();
    for line in unified.split('\n') {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let previous_blank = lines.last().is_some_and(|l| l.is_empty());
        if line.is_empty() && (lines.is_empty() || previous_blank) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// A placeholder name: a dot path of letters, digits, `_` and `-`.
fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
}

fn lookup<'a>(variables: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    // A key that itself contains dots ("user.name": ...) wins over the nested reading.
    if let Some(v) = variables.get(name) {
        return Some(v);
    }
    let mut segments = name.split('.');
    let mut current = variables.get(segments.next()?)?;
    for seg in segments {
        current = match current {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn render_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

/// Replaces `{{name}}` placeholders; returns the text and the names without a value (each
/// once). A missing placeholder is dropped when `drop_missing`, kept verbatim otherwise.
pub fn render_template(
    template: &str,
    variables: &Map<String, Value>,
    drop_missing: bool,
) -> (String, Vec<String>) {
    let mut out = String::with_capacity(template.len());
    let mut missing: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            out.push_str(&rest[open..]);
            return (out, missing);
        };
        let name = after_open[..close].trim();
        if !is_placeholder_name(name) {
            // Not a placeholder: emit the braces literally and keep scanning after them, so
            // a real placeholder later in the text is still found.
            out.push_str("{{");
            rest = after_open;
            continue;
        }
        match lookup(variables, name) {
            Some(value) => render_value(value, &mut out),
            None => {
                if !missing.iter().any(|m| m == name) {
                    missing.push(name.to_string());
                }
                if !drop_missing {
                    out.push_str(&rest[open..open + 2 + close + 2]);
                }
            }
        }
        rest = &after_open[close + 2..];
    }
    out.push_str(rest);
    (out, missing)
}
