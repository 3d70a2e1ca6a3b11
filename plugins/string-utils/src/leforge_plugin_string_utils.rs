//! `string-utils`: slugs, case conversion, truncation, regular expressions, `{{name}}`
//! templates and whitespace normalization.
//!
//! Lengths and offsets are in characters (Unicode scalar values), never bytes, because that
//! is what an agent counts when it reads text. Regular expressions use the `regex` crate,
//! whose matching is linear in the input, so a pattern from an LLM cannot hang the call; its
//! compiled size is capped so a pattern cannot exhaust memory either.

use leforge_forgehook_sdk::{forgehook, Error, ForgeHook};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod regexes;
mod text;

// Input enums derive Serialize so that schemars can write their `default`s into the schema,
// and their variants carry no doc comments: schemars would turn those into a `oneOf` of
// `const`s, which LLM providers handle worse than a plain `enum`. The field docs list the
// choices instead.

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SlugifyIn {
    /// The text to turn into a slug, e.g. a title.
    text: String,
}

#[derive(Serialize, JsonSchema)]
struct SlugifyOut {
    /// Lowercase words joined by `-`, e.g. `creme-brulee-recipe`.
    slug: String,
}

fn slugify(input: SlugifyIn) -> Result<SlugifyOut, Error> {
    let slug = text::slugify(&input.text);
    if slug.is_empty() {
        return Err(Error::invalid_input(
            "`text` has no letters or digits to make a slug from",
        ));
    }
    Ok(SlugifyOut { slug })
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Case {
    Camel,
    Pascal,
    Snake,
    Constant,
    Kebab,
    Title,
    Upper,
    Lower,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CaseIn {
    /// The text to convert.
    text: String,
    /// The target case: `camel` (helloWorld), `pascal` (HelloWorld), `snake` (hello_world),
    /// `constant` (HELLO_WORLD), `kebab` (hello-world), `title` (Hello World), `upper` (HELLO
    /// WORLD), `lower` (hello world). camel, pascal, snake, constant and kebab split the text
    /// into words at spaces, punctuation, `_`, `-` and lower-to-upper changes, dropping the
    /// punctuation; `title` on text with spaces capitalizes each word and keeps punctuation;
    /// `upper` and `lower` only change letters.
    to: Case,
}

#[derive(Serialize, JsonSchema)]
struct TextOut {
    /// The resulting text.
    text: String,
}

fn case(input: CaseIn) -> Result<TextOut, Error> {
    use heck::{
        ToKebabCase, ToLowerCamelCase, ToShoutySnakeCase, ToSnakeCase, ToTitleCase,
        ToUpperCamelCase,
    };
    let t = &input.text;
    let text = match input.to {
        Case::Camel => t.to_lower_camel_case(),
        Case::Pascal => t.to_upper_camel_case(),
        Case::Snake => t.to_snake_case(),
        Case::Constant => t.to_shouty_snake_case(),
        Case::Kebab => t.to_kebab_case(),
        // Prose ("it's a dog's life") must keep its punctuation, which heck would drop; an
        // identifier ("user_id", "firstName") has no spaces and is split into words.
        Case::Title if t.chars().any(char::is_whitespace) => text::title_words(t),
        Case::Title => t.to_title_case(),
        Case::Upper => t.to_uppercase(),
        Case::Lower => t.to_lowercase(),
    };
    Ok(TextOut { text })
}

fn default_ellipsis() -> String {
    "...".into()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TruncateIn {
    /// The text to shorten.
    text: String,
    /// The longest allowed result, in characters, including the ellipsis.
    max_length: u32,
    /// Appended when the text is cut (counts toward `max_length`). Use "" for none.
    #[serde(default = "default_ellipsis")]
    ellipsis: String,
    /// Cut at the last space before the limit instead of mid-word (falls back to a mid-word
    /// cut when the first word alone is too long).
    #[serde(default)]
    word_boundary: bool,
}

#[derive(Serialize, JsonSchema)]
struct TruncateOut {
    /// The text, shortened to at most `max_length` characters.
    text: String,
    /// Whether the text was shortened.
    truncated: bool,
}

fn truncate(input: TruncateIn) -> Result<TruncateOut, Error> {
    let max = input.max_length as usize;
    if input.text.chars().count() <= max {
        return Ok(TruncateOut {
            text: input.text,
            truncated: false,
        });
    }
    let ellipsis_len = input.ellipsis.chars().count();
    if ellipsis_len > max {
        return Err(Error::invalid_input(format!(
            "`max_length` ({max}) is shorter than the ellipsis ({ellipsis_len} characters); raise it or pass \"ellipsis\": \"\""
        )));
    }
    let keep = max - ellipsis_len;
    let cut = text::char_prefix(&input.text, keep);
    let mut kept = if input.word_boundary {
        text::back_to_word_boundary(&input.text, cut)
    } else {
        cut
    }
    .to_string();
    kept.push_str(&input.ellipsis);
    Ok(TruncateOut {
        text: kept,
        truncated: true,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NormalizeWhitespaceIn {
    /// The text to clean up.
    text: String,
    /// Keep line breaks: each line is normalized on its own, runs of blank lines become one
    /// blank line, and `\r\n` becomes `\n`. By default every run of whitespace, line breaks
    /// included, becomes one space.
    #[serde(default)]
    preserve_newlines: bool,
}

fn normalize_whitespace(input: NormalizeWhitespaceIn) -> Result<TextOut, Error> {
    Ok(TextOut {
        text: text::normalize_whitespace(&input.text, input.preserve_newlines),
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum OnMissing {
    #[default]
    Error,
    Keep,
    Empty,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TemplateIn {
    /// Text with `{{name}}` placeholders (spaces inside the braces are allowed). A name may be
    /// a dot path into nested values: `{{user.name}}`, `{{items.0}}`.
    template: String,
    /// The values to substitute, by name. Strings are inserted as they are, numbers and
    /// booleans as written in JSON, null as nothing, objects and arrays as compact JSON.
    variables: Map<String, Value>,
    /// What to do with a placeholder whose name is not in `variables`: `error` (default),
    /// `keep` (leave `{{name}}` in the text), or `empty` (replace it with nothing).
    #[serde(default)]
    on_missing: OnMissing,
}

#[derive(Serialize, JsonSchema)]
struct TemplateOut {
    /// The template with its placeholders replaced.
    text: String,
    /// Names of placeholders that had no value (each once, in order of appearance); empty
    /// when every placeholder was filled.
    missing: Vec<String>,
}

fn template(input: TemplateIn) -> Result<TemplateOut, Error> {
    let (text, missing) = text::render_template(
        &input.template,
        &input.variables,
        input.on_missing != OnMissing::Keep,
    );
    if input.on_missing == OnMissing::Error && !missing.is_empty() {
        return Err(Error::invalid_input(format!(
            "no value in `variables` for {}; provide them or pass \"on_missing\": \"keep\" or \"empty\"",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(TemplateOut { text, missing })
}

/// The ForgeHook, as the component exports it and as tests invoke it.
pub fn hook() -> ForgeHook {
    ForgeHook::new(
        "string-utils",
        "String utilities",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Text helpers: URL slugs, case conversion (camel, snake, kebab, title, ...), \
             truncation, regular-expression test/extract/replace, `{{name}}` templates and \
             whitespace cleanup.",
    )
    .category("text")
    .tags(&["text", "string", "regex", "slug", "template"])
    .author("LeForge")
    // Whole documents pass through the regex and whitespace tools (an agent cleans a 10 MB
    // CSV by reference, never through the model); the host still caps these.
    .memory_mb(256)
    .max_output_bytes(16 * 1024 * 1024)
    .timeout_ms(30_000)
    .endpoint(
        "slugify",
        "Turns text such as a title into a URL slug: lowercase, accents removed (é to e, ß \
             to ss), every run of other characters replaced by a single `-`, e.g. \"Crème \
             Brûlée: A Recipe!\" to \"creme-brulee-a-recipe\". Letters of non-Latin scripts are \
             kept.",
        slugify,
    )
    .endpoint(
        "case",
        "Converts text to another case: camel, pascal, snake, constant, kebab, title, upper \
             or lower, e.g. \"User ID number\" to \"user_id_number\" (snake) or \"userIdNumber\" \
             (camel).",
        case,
    )
    .endpoint(
        "truncate",
        "Shortens text to at most `max_length` characters, ending with an ellipsis (\"...\" \
             by default) when it was cut, optionally at a word boundary. Text that already fits \
             is returned unchanged.",
        truncate,
    )
    .endpoint(
        "regex_test",
        "Tells whether a regular expression matches anywhere in a text (anchor it with ^ \
             and $ to test the whole text). Rust regex syntax (like PCRE without look-around \
             or backreferences); flags: i (ignore case), m (^ and $ match at lines), s (. \
             matches newline), x (ignore whitespace), U (lazy by default).",
        regexes::regex_test,
    )
    .endpoint(
        "regex_extract",
        "Finds the matches of a regular expression in a text and returns each match with \
             its capture groups (numbered and named) and character offsets. Use it to pull \
             emails, numbers, ids or fields out of text. Rust regex syntax (no look-around or \
             backreferences); flags i, m, s, x, U.",
        regexes::regex_extract,
    )
    .endpoint(
        "regex_replace",
        "Replaces the matches of a regular expression in a text (all of them, or only the \
             first with \"all\": false). The replacement can refer to groups as ${1} or \
             ${name}; $$ is a literal $. Returns the new text and the number of replacements.",
        regexes::regex_replace,
    )
    .endpoint(
        "template",
        "Fills `{{name}}` placeholders in a template from `variables`, e.g. \"Hello \
             {{user.name}}, your order {{order_id}} has shipped\". By default a placeholder \
             without a value is an error.",
        template,
    )
    .endpoint(
        "normalize_whitespace",
        "Cleans up whitespace: trims the text and turns every run of spaces, tabs, \
             non-breaking spaces and line breaks into a single space; with \
             `preserve_newlines` it keeps line structure and collapses blank lines.",
        normalize_whitespace,
    )
}

forgehook!(hook);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn call(endpoint: &str, input: Value) -> Result<Value, Error> {
        hook()
            .invoke(endpoint, &input.to_string())
            .map(|out| serde_json::from_str(&out).unwrap())
    }

    pub(crate) fn ok(endpoint: &str, input: Value) -> Value {
        call(endpoint, input).unwrap()
    }

    pub(crate) fn err(endpoint: &str, input: Value) -> Error {
        call(endpoint, input).unwrap_err()
    }

    #[test]
    fn manifest_passes_the_servers_rules() {
        let manifest = leforge_core::forgehook::Manifest::from_json(&hook().manifest_json())
            .expect("the manifest parses");
        assert_eq!(manifest.validate(), vec![]);
    }

    #[test]
    fn manifest_is_complete() {
        let m = hook().manifest();
        assert_eq!(m["id"], "string-utils");
        let names: Vec<&str> = m["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "slugify",
                "case",
                "truncate",
                "regex_test",
                "regex_extract",
                "regex_replace",
                "template",
                "normalize_whitespace"
            ]
        );
        let slug = &m["endpoints"][0];
        assert_eq!(slug["input_schema"]["required"], json!(["text"]));
        assert_eq!(
            slug["input_schema"]["properties"]
                .as_object()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(slug["output_schema"]["required"], json!(["slug"]));
        assert_eq!(
            m["endpoints"][1]["input_schema"]["properties"]["to"]["enum"],
            json!(["camel", "pascal", "snake", "constant", "kebab", "title", "upper", "lower"])
        );
        assert_eq!(
            m["endpoints"][2]["input_schema"]["properties"]["ellipsis"]["default"],
            "..."
        );
        assert_eq!(
            m["endpoints"][6]["input_schema"]["properties"]["on_missing"]["default"],
            "error"
        );
    }

    #[test]
    fn slugify_examples() {
        for (text, slug) in [
            ("Hello, World!", "hello-world"),
            ("Crème Brûlée: A Recipe!", "creme-brulee-a-recipe"),
            ("  --Already--slugged--  ", "already-slugged"),
            ("Straße & Ørsted Æble", "strasse-orsted-aeble"),
            ("Don't Stop Me Now", "dont-stop-me-now"),
            ("Version 2.0 (beta)", "version-2-0-beta"),
            ("Ｆｕｌｌｗｉｄｔｈ ①", "fullwidth-1"),
            ("Привет мир", "привет-мир"),
            ("東京 2024", "東京-2024"),
        ] {
            assert_eq!(
                ok("slugify", json!({"text": text})),
                json!({"slug": slug}),
                "{text}"
            );
        }
    }

    #[test]
    fn slugify_rejects_bad_input() {
        assert_eq!(
            err("slugify", json!({"text": " !!! "})),
            Error::invalid_input("`text` has no letters or digits to make a slug from")
        );
        let e = err("slugify", json!({"text": "a", "separator": "_"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.contains("unknown field `separator`"),
            "{}",
            e.message
        );
        assert_eq!(err("slugify", json!({"text": null})).code, "INVALID_INPUT");
    }

    #[test]
    fn case_conversions() {
        let conv =
            |text: &str, to: &str| ok("case", json!({"text": text, "to": to}))["text"].clone();
        assert_eq!(conv("User ID number", "snake"), "user_id_number");
        assert_eq!(conv("User ID number", "camel"), "userIdNumber");
        assert_eq!(conv("user_id_number", "pascal"), "UserIdNumber");
        assert_eq!(conv("XMLHttpRequest", "snake"), "xml_http_request");
        assert_eq!(conv("firstName", "kebab"), "first-name");
        assert_eq!(conv("first-name", "constant"), "FIRST_NAME");
        assert_eq!(conv("first_name", "title"), "First Name");
        assert_eq!(conv("it's a DOG'S life", "title"), "It's A Dog's Life");
        assert_eq!(conv("Straße über", "upper"), "STRASSE ÜBER");
        assert_eq!(conv("ÉCOLE Ünd", "lower"), "école ünd");
        assert_eq!(conv("", "snake"), "");
    }

    #[test]
    fn case_rejects_bad_input() {
        let e = err("case", json!({"text": "x", "to": "sponge"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.starts_with("at `to`: unknown variant `sponge`"),
            "{}",
            e.message
        );
        let e = err("case", json!({"text": "x"}));
        assert!(e.message.contains("missing field `to`"), "{}", e.message);
    }

    #[test]
    fn truncate_examples() {
        let t = |input: Value| ok("truncate", input);
        assert_eq!(
            t(json!({"text": "short", "max_length": 10})),
            json!({"text": "short", "truncated": false})
        );
        assert_eq!(
            t(json!({"text": "exactly10!", "max_length": 10})),
            json!({"text": "exactly10!", "truncated": false})
        );
        assert_eq!(
            t(json!({"text": "The quick brown fox", "max_length": 12})),
            json!({"text": "The quick...", "truncated": true})
        );
        assert_eq!(
            t(json!({"text": "The quick brown fox", "max_length": 14, "word_boundary": true})),
            json!({"text": "The quick...", "truncated": true})
        );
        assert_eq!(
            t(json!({"text": "Supercalifragilistic word", "max_length": 8, "word_boundary": true})),
            json!({"text": "Super...", "truncated": true})
        );
        assert_eq!(
            t(json!({"text": "héllo wörld", "max_length": 6, "ellipsis": "…"})),
            json!({"text": "héllo…", "truncated": true})
        );
        assert_eq!(
            t(json!({"text": "abcdef", "max_length": 3, "ellipsis": ""})),
            json!({"text": "abc", "truncated": true})
        );
    }

    #[test]
    fn truncate_rejects_bad_input() {
        assert_eq!(
            err("truncate", json!({"text": "abcdef", "max_length": 2})),
            Error::invalid_input(
                "`max_length` (2) is shorter than the ellipsis (3 characters); raise it or pass \"ellipsis\": \"\""
            )
        );
        let e = err("truncate", json!({"text": "abc", "max_length": -1}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(e.message.starts_with("at `max_length`"), "{}", e.message);
        assert_eq!(
            err("truncate", json!({"text": "abc"})).code,
            "INVALID_INPUT"
        );
    }

    #[test]
    fn template_substitution() {
        let vars = json!({
            "name": "Ada",
            "user": {"email": "ada@example.com", "tags": ["a", "b"]},
            "count": 3,
            "ok": true,
            "nothing": null,
            "items": ["x", "y"]
        });
        assert_eq!(
            ok(
                "template",
                json!({
                    "template": "Hi {{name}} <{{ user.email }}>: {{count}} {{ok}} [{{nothing}}] {{items.1}} {{user.tags}}",
                    "variables": vars
                })
            ),
            json!({"text": "Hi Ada <ada@example.com>: 3 true [] y [\"a\",\"b\"]", "missing": []})
        );
        // Braces that do not form a placeholder are left alone.
        assert_eq!(
            ok(
                "template",
                json!({"template": "{{ }} {{a b}} {x} {{name", "variables": {}})
            ),
            json!({"text": "{{ }} {{a b}} {x} {{name", "missing": []})
        );
        assert_eq!(
            ok(
                "template",
                json!({"template": "{{a}}-{{b}}-{{a}}", "variables": {"b": 1}, "on_missing": "keep"})
            ),
            json!({"text": "{{a}}-1-{{a}}", "missing": ["a"]})
        );
        assert_eq!(
            ok(
                "template",
                json!({"template": "{{a}}-{{b}}-{{ c.d }}", "variables": {"b": 1}, "on_missing": "empty"})
            ),
            json!({"text": "-1-", "missing": ["a", "c.d"]})
        );
    }

    #[test]
    fn template_rejects_missing_and_bad_input() {
        assert_eq!(
            err("template", json!({"template": "{{a}} {{b.c}} {{a}}", "variables": {"b": {}}})),
            Error::invalid_input(
                "no value in `variables` for `a`, `b.c`; provide them or pass \"on_missing\": \"keep\" or \"empty\""
            )
        );
        let e = err("template", json!({"template": "x", "variables": [1]}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.starts_with("at `variables`: invalid type"),
            "{}",
            e.message
        );
        let e = err(
            "template",
            json!({"template": "x", "variables": {}, "on_missing": "ignore"}),
        );
        assert_eq!(e.code, "INVALID_INPUT");
    }

    #[test]
    fn normalize_whitespace_examples() {
        assert_eq!(
            ok(
                "normalize_whitespace",
                json!({"text": "  Hello \t\u{a0} world\r\n\n again  "})
            ),
            json!({"text": "Hello world again"})
        );
        assert_eq!(
            ok(
                "normalize_whitespace",
                json!({
                    "text": "\n\n  Title  \r\n\r\n\r\n  body   text \n\tmore\u{2003}text\n\n\n",
                    "preserve_newlines": true
                })
            ),
            json!({"text": "Title\n\nbody text\nmore text"})
        );
        assert_eq!(
            ok("normalize_whitespace", json!({"text": " \n "})),
            json!({"text": ""})
        );
        assert_eq!(
            err("normalize_whitespace", json!({"text": 1})).code,
            "INVALID_INPUT"
        );
    }
}
