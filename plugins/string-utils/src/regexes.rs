//! The regular-expression endpoints. Patterns come from LLMs, so every one is compiled
//! under size limits and a failure to compile is an `INVALID_INPUT` naming the problem.

use leforge_forgehook_sdk::Error;
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Map;

/// Longest accepted pattern, in bytes; real-world patterns are far shorter.
const MAX_PATTERN_LEN: usize = 4_096;
/// Cap on the compiled program, so that `a{1000}{1000}`-style patterns fail fast instead of
/// eating the ForgeHook's memory.
const COMPILED_SIZE_LIMIT: usize = 2 << 20;
/// Cap on the lazy DFA's cache.
const DFA_SIZE_LIMIT: usize = 4 << 20;
/// The most matches one `regex_extract` call may ask for.
const MAX_MATCHES: u32 = 10_000;

fn compile(pattern: &str, flags: &str) -> Result<Regex, Error> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Error::invalid_input(format!(
            "`pattern` is {} bytes long; at most {MAX_PATTERN_LEN} are allowed",
            pattern.len()
        )));
    }
    let mut builder = RegexBuilder::new(pattern);
    builder
        .size_limit(COMPILED_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT);
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            'U' => builder.swap_greed(true),
            // JavaScript habits: `g` is what `all` means here, `u` is always on.
            'g' | 'u' => &mut builder,
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown flag `{other}` in `flags`; use any of i, m, s, x, U"
                )))
            }
        };
    }
    builder.build().map_err(|e| match e {
        regex::Error::CompiledTooBig(limit) => Error::invalid_input(format!(
            "`pattern` compiles to more than {limit} bytes; simplify it (e.g. smaller repetition counts)"
        )),
        // The syntax error's Display shows the pattern with a caret under the problem.
        other => Error::invalid_input(format!("`pattern` is not a valid regular expression: {other}")),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexTestIn {
    /// The text to search.
    text: String,
    /// A regular expression in Rust regex syntax, e.g. `^\d{3}-\d{4}$`.
    pattern: String,
    /// Letters among `i` (ignore case), `m` (`^`/`$` match at line breaks), `s` (`.` matches
    /// a newline), `x` (ignore whitespace and `#` comments in the pattern), `U` (lazy
    /// quantifiers by default), e.g. `"im"`.
    #[serde(default)]
    flags: String,
}

#[derive(Serialize, JsonSchema)]
pub struct RegexTestOut {
    /// Whether the pattern matches somewhere in the text.
    matched: bool,
}

pub fn regex_test(input: RegexTestIn) -> Result<RegexTestOut, Error> {
    let re = compile(&input.pattern, &input.flags)?;
    Ok(RegexTestOut {
        matched: re.is_match(&input.text),
    })
}

fn default_true() -> bool {
    true
}

fn default_max_matches() -> u32 {
    1_000
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexExtractIn {
    /// The text to search.
    text: String,
    /// A regular expression in Rust regex syntax. Use groups `( )` or named groups
    /// `(?P<name> )` to capture parts of each match.
    pattern: String,
    /// Letters among `i`, `m`, `s`, `x`, `U` (see regex_test), e.g. `"i"`.
    #[serde(default)]
    flags: String,
    /// Return every match (default) or only the first.
    #[serde(default = "default_true")]
    all: bool,
    /// Stop after this many matches (1 to 10000); `truncated` tells whether more existed.
    #[serde(default = "default_max_matches")]
    #[schemars(range(min = 1, max = 10000))]
    max_matches: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct RegexMatch {
    /// The matched text.
    #[serde(rename = "match")]
    matched: String,
    /// Offset of the first character of the match, in characters from the start of `text`.
    start: usize,
    /// Offset just past the last character of the match, in characters.
    end: usize,
    /// The numbered capture groups 1, 2, ... in order; null for a group that did not take
    /// part in the match.
    groups: Vec<Option<String>>,
    /// The named capture groups by name; null for one that did not take part.
    named: Map<String, serde_json::Value>,
}

#[derive(Serialize, JsonSchema)]
pub struct RegexExtractOut {
    /// The matches in order of appearance.
    matches: Vec<RegexMatch>,
    /// How many matches were returned.
    count: usize,
    /// Whether matching stopped at `max_matches` with more matches left in the text.
    truncated: bool,
}

pub fn regex_extract(input: RegexExtractIn) -> Result<RegexExtractOut, Error> {
    if input.max_matches == 0 || input.max_matches > MAX_MATCHES {
        return Err(Error::invalid_input(format!(
            "`max_matches` must be between 1 and {MAX_MATCHES}, got {}",
            input.max_matches
        )));
    }
    let re = compile(&input.pattern, &input.flags)?;
    let limit = if input.all {
        input.max_matches as usize
    } else {
        1
    };
    let names: Vec<Option<&str>> = re.capture_names().collect();
    let mut matches = Vec::new();
    let mut truncated = false;
    // Matches come in order, so character offsets are counted incrementally: linear in the
    // text rather than quadratic.
    let (mut byte_pos, mut char_pos) = (0usize, 0usize);
    let mut to_chars = |byte: usize| {
        char_pos += input.text[byte_pos..byte].chars().count();
        byte_pos = byte;
        char_pos
    };
    for caps in re.captures_iter(&input.text) {
        if matches.len() == limit {
            truncated = input.all;
            break;
        }
        let Some(whole) = caps.get(0) else { continue };
        let start = to_chars(whole.start());
        let end = to_chars(whole.end());
        let groups = (1..caps.len())
            .map(|i| caps.get(i).map(|m| m.as_str().to_string()))
            .collect();
        let mut named = Map::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(name) = name {
                let value = caps
                    .get(i)
                    .map_or(serde_json::Value::Null, |m| m.as_str().into());
                named.insert((*name).to_string(), value);
            }
        }
        matches.push(RegexMatch {
            matched: whole.as_str().to_string(),
            start,
            end,
            groups,
            named,
        });
    }
    Ok(RegexExtractOut {
        count: matches.len(),
        matches,
        truncated,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexReplaceIn {
    /// The text to change.
    text: String,
    /// A regular expression in Rust regex syntax.
    pattern: String,
    /// The replacement. `${1}` or `${name}` insert a capture group, `$0` the whole match,
    /// `$$` a literal `$`. Prefer the braced form: `$1a` means the group named `1a`.
    replacement: String,
    /// Letters among `i`, `m`, `s`, `x`, `U` (see regex_test).
    #[serde(default)]
    flags: String,
    /// Replace every match (default) or only the first.
    #[serde(default = "default_true")]
    all: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct RegexReplaceOut {
    /// The text after replacement.
    text: String,
    /// How many matches were replaced.
    replacements: usize,
}

pub fn regex_replace(input: RegexReplaceIn) -> Result<RegexReplaceOut, Error> {
    let re = compile(&input.pattern, &input.flags)?;
    let mut out = String::with_capacity(input.text.len());
    let mut last = 0;
    let mut replacements = 0;
    for caps in re.captures_iter(&input.text) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&input.text[last..whole.start()]);
        caps.expand(&input.replacement, &mut out);
        last = whole.end();
        replacements += 1;
        if !input.all {
            break;
        }
    }
    out.push_str(&input.text[last..]);
    Ok(RegexReplaceOut {
        text: out,
        replacements,
    })
}

#[cfg(test)]
mod tests {
    use crate::tests::{err, ok};
    use leforge_forgehook_sdk::Error;
    use serde_json::json;

    #[test]
    fn regex_test_examples() {
        assert_eq!(
            ok(
                "regex_test",
                json!({"text": "call 555-1234 now", "pattern": r"\d{3}-\d{4}"})
            ),
            json!({"matched": true})
        );
        assert_eq!(
            ok(
                "regex_test",
                json!({"text": "call 555-1234 now", "pattern": r"^\d{3}-\d{4}$"})
            ),
            json!({"matched": false})
        );
        assert_eq!(
            ok(
                "regex_test",
                json!({"text": "HELLO", "pattern": "hello", "flags": "i"})
            ),
            json!({"matched": true})
        );
        assert_eq!(
            ok(
                "regex_test",
                json!({"text": "a\nb", "pattern": "^b$", "flags": "m"})
            ),
            json!({"matched": true})
        );
        assert_eq!(
            ok(
                "regex_test",
                json!({"text": "a\nb", "pattern": "a.b", "flags": "gs"})
            ),
            json!({"matched": true})
        );
    }

    #[test]
    fn regex_errors_are_input_errors_not_traps() {
        let e = err("regex_test", json!({"text": "x", "pattern": "(unclosed"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message
                .starts_with("`pattern` is not a valid regular expression: regex parse error"),
            "{}",
            e.message
        );
        assert!(e.message.contains("unclosed group"), "{}", e.message);
        // Look-around is not supported by linear-time engines; it must say so, not trap.
        let e = err("regex_extract", json!({"text": "x", "pattern": "a(?=b)"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(e.message.contains("look-around"), "{}", e.message);
        let e = err(
            "regex_replace",
            json!({"text": "x", "pattern": "a{1000}{1000}", "replacement": ""}),
        );
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message
                .starts_with("`pattern` compiles to more than 2097152 bytes"),
            "{}",
            e.message
        );
        assert_eq!(
            err(
                "regex_test",
                json!({"text": "x", "pattern": "a".repeat(4097)})
            ),
            Error::invalid_input("`pattern` is 4097 bytes long; at most 4096 are allowed")
        );
        assert_eq!(
            err(
                "regex_test",
                json!({"text": "x", "pattern": "x", "flags": "iq"})
            ),
            Error::invalid_input("unknown flag `q` in `flags`; use any of i, m, s, x, U")
        );
        assert_eq!(
            err("regex_test", json!({"text": "x"})).code,
            "INVALID_INPUT"
        );
    }

    #[test]
    fn regex_extract_groups_and_char_offsets() {
        let out = ok(
            "regex_extract",
            json!({
                "text": "café: bob@example.com, ann@test.org",
                "pattern": r"(?P<user>\w+)@(\w+)\.(com|net)?"
            }),
        );
        assert_eq!(
            out,
            json!({
                "matches": [
                    {"match": "bob@example.com", "start": 6, "end": 21,
                     "groups": ["bob", "example", "com"], "named": {"user": "bob"}},
                    {"match": "ann@test.", "start": 23, "end": 32,
                     "groups": ["ann", "test", null], "named": {"user": "ann"}}
                ],
                "count": 2,
                "truncated": false
            })
        );
        let out = ok(
            "regex_extract",
            json!({"text": "a1 b2 c3", "pattern": r"\d", "all": false}),
        );
        assert_eq!(out["count"], 1);
        assert_eq!(out["truncated"], false);
        assert_eq!(out["matches"][0]["match"], "1");
        let out = ok(
            "regex_extract",
            json!({"text": "a1 b2 c3", "pattern": r"\d", "max_matches": 2}),
        );
        assert_eq!(out["count"], 2);
        assert_eq!(out["truncated"], true);
        assert_eq!(
            out["matches"][1],
            json!({"match": "2", "start": 4, "end": 5, "groups": [], "named": {}})
        );
        let out = ok("regex_extract", json!({"text": "abc", "pattern": r"\d"}));
        assert_eq!(out, json!({"matches": [], "count": 0, "truncated": false}));
        assert_eq!(
            err(
                "regex_extract",
                json!({"text": "a", "pattern": "a", "max_matches": 0})
            ),
            Error::invalid_input("`max_matches` must be between 1 and 10000, got 0")
        );
    }

    #[test]
    fn regex_replace_examples() {
        assert_eq!(
            ok(
                "regex_replace",
                json!({
                    "text": "2024-01-15 and 2024-02-20",
                    "pattern": r"(?P<y>\d{4})-(\d{2})-(\d{2})",
                    "replacement": "${3}/${2}/${y}"
                })
            ),
            json!({"text": "15/01/2024 and 20/02/2024", "replacements": 2})
        );
        assert_eq!(
            ok(
                "regex_replace",
                json!({"text": "a a a", "pattern": "a", "replacement": "$$b", "all": false})
            ),
            json!({"text": "$b a a", "replacements": 1})
        );
        assert_eq!(
            ok(
                "regex_replace",
                json!({"text": "Hello", "pattern": "x", "replacement": "y"})
            ),
            json!({"text": "Hello", "replacements": 0})
        );
        assert_eq!(
            ok(
                "regex_replace",
                json!({"text": "ab", "pattern": "", "replacement": "-"})
            ),
            json!({"text": "-a-b-", "replacements": 3})
        );
        assert_eq!(
            err("regex_replace", json!({"text": "x", "pattern": "x"})).code,
            "INVALID_INPUT"
        );
    }
}
