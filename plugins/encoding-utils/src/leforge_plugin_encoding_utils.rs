//! `encoding-utils`: base64, base64url, hex, URL (percent) and HTML entity encoding and
//! decoding, and JWT decoding without verification.
//!
//! Every encoder takes `text` and returns `encoded`; every decoder takes `encoded` and returns
//! `decoded`, so an agent can chain them without reading each schema twice. Decoders are
//! strict (a malformed input is an error naming the position) because silently passing bad
//! data through is worse for an agent than a clear error it can act on.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use leforge_forgehook_sdk::{forgehook, Error, ForgeHook};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// Input enums derive Serialize so that schemars can write their `default`s into the schema,
// and their variants carry no doc comments: schemars would turn those into a `oneOf` of
// `const`s, which LLM providers handle worse than a plain `enum`. The field docs list the
// choices instead.

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TextIn {
    /// The text to encode (its UTF-8 bytes are encoded).
    text: String,
}

#[derive(Serialize, JsonSchema)]
struct EncodedOut {
    /// The encoded text.
    encoded: String,
}

#[derive(Serialize, JsonSchema)]
struct DecodedOut {
    /// The decoded text (or hex of the bytes when `output` is `hex`).
    decoded: String,
}

/// How a decoder returns bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum BytesOutput {
    // As UTF-8 text; bytes that are not valid UTF-8 are an error.
    #[default]
    Text,
    // As lowercase hex, for binary data.
    Hex,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Base64DecodeIn {
    /// The base64 text. Padding (`=`) is optional; spaces and line breaks are ignored.
    encoded: String,
    /// `text` (default) returns the bytes as UTF-8 text; `hex` returns them as lowercase hex,
    /// for binary data.
    #[serde(default)]
    output: BytesOutput,
}

fn bytes_out(bytes: Vec<u8>, output: BytesOutput) -> Result<DecodedOut, Error> {
    match output {
        BytesOutput::Hex => Ok(DecodedOut {
            decoded: hex::encode(bytes),
        }),
        BytesOutput::Text => String::from_utf8(bytes)
            .map(|decoded| DecodedOut { decoded })
            .map_err(|e| {
                Error::invalid_input(format!(
                    "the decoded bytes are not UTF-8 text (invalid byte at offset {}); pass \"output\": \"hex\" to get binary data as hex",
                    e.utf8_error().valid_up_to()
                ))
            }),
    }
}

fn lenient_engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Decodes base64 in `alphabet`, ignoring ASCII whitespace (MIME wraps lines at 76) and
/// accepting input with or without padding.
fn decode_base64(
    encoded: &str,
    alphabet: &base64::alphabet::Alphabet,
    name: &str,
    other: &str,
) -> Result<Vec<u8>, Error> {
    let compact: String = encoded
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    lenient_engine(alphabet).decode(&compact).map_err(|e| {
        let hint = match e {
            base64::DecodeError::InvalidByte(_, b) if matches!(b, b'-' | b'_' | b'+' | b'/') => {
                format!(
                    " (`{}` belongs to the other alphabet; try {other})",
                    b as char
                )
            }
            _ => String::new(),
        };
        Error::invalid_input(format!("`encoded` is not valid {name}: {e}{hint}"))
    })
}

fn base64_encode(input: TextIn) -> Result<EncodedOut, Error> {
    Ok(EncodedOut {
        encoded: base64::engine::general_purpose::STANDARD.encode(input.text),
    })
}

fn base64_decode(input: Base64DecodeIn) -> Result<DecodedOut, Error> {
    let bytes = decode_base64(
        &input.encoded,
        &base64::alphabet::STANDARD,
        "base64",
        "base64url_decode",
    )?;
    bytes_out(bytes, input.output)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Base64UrlEncodeIn {
    /// The text to encode (its UTF-8 bytes are encoded).
    text: String,
    /// Append `=` padding. Off by default, as in JWTs and most URL uses.
    #[serde(default)]
    padding: bool,
}

fn base64url_encode(input: Base64UrlEncodeIn) -> Result<EncodedOut, Error> {
    let encoded = if input.padding {
        base64::engine::general_purpose::URL_SAFE.encode(input.text)
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input.text)
    };
    Ok(EncodedOut { encoded })
}

fn base64url_decode(input: Base64DecodeIn) -> Result<DecodedOut, Error> {
    let bytes = decode_base64(
        &input.encoded,
        &base64::alphabet::URL_SAFE,
        "base64url",
        "base64_decode",
    )?;
    bytes_out(bytes, input.output)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HexEncodeIn {
    /// The text to encode (its UTF-8 bytes are encoded).
    text: String,
    /// Use `A-F` instead of `a-f`.
    #[serde(default)]
    uppercase: bool,
}

fn hex_encode(input: HexEncodeIn) -> Result<EncodedOut, Error> {
    let encoded = if input.uppercase {
        hex::encode_upper(input.text)
    } else {
        hex::encode(input.text)
    };
    Ok(EncodedOut { encoded })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HexDecodeIn {
    /// Hex digits, upper- or lowercase, two per byte. An optional `0x` prefix and whitespace
    /// between digits are ignored.
    encoded: String,
}

fn hex_decode(input: HexDecodeIn) -> Result<DecodedOut, Error> {
    let trimmed = input.encoded.trim();
    let body = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = hex::decode(&compact)
        .map_err(|e| Error::invalid_input(format!("`encoded` is not valid hex: {e}")))?;
    bytes_out(bytes, BytesOutput::Text)
}

/// How text is percent-encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum UrlMode {
    // RFC 3986 component encoding (like JavaScript's `encodeURIComponent`, but also encoding
    // `!'()*`): everything except `A-Z a-z 0-9 - . _ ~` is percent-encoded; a space is `%20`.
    #[default]
    Component,
    // `application/x-www-form-urlencoded` (HTML forms, query strings): a space is `+`;
    // everything except `A-Z a-z 0-9 * - . _` is percent-encoded.
    Form,
}

/// RFC 3986 unreserved characters stay as they are.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The WHATWG urlencoded serializer's set; the space is handled separately (as `+`).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UrlEncodeIn {
    /// The text to encode (non-ASCII characters are encoded as their UTF-8 bytes).
    text: String,
    /// `component` (default, for a path segment or query value) or `form` (spaces become `+`).
    #[serde(default)]
    mode: UrlMode,
}

fn url_encode(input: UrlEncodeIn) -> Result<EncodedOut, Error> {
    let encoded = match input.mode {
        UrlMode::Component => {
            percent_encoding::utf8_percent_encode(&input.text, COMPONENT).to_string()
        }
        UrlMode::Form => input
            .text
            .split(' ')
            .map(|part| percent_encoding::utf8_percent_encode(part, FORM).to_string())
            .collect::<Vec<_>>()
            .join("+"),
    };
    Ok(EncodedOut { encoded })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UrlDecodeIn {
    /// Percent-encoded text, e.g. `caf%C3%A9%20au%20lait`.
    encoded: String,
    /// `component` (default) keeps `+` as is; `form` turns `+` into a space first.
    #[serde(default)]
    mode: UrlMode,
}

fn url_decode(input: UrlDecodeIn) -> Result<DecodedOut, Error> {
    let bytes = input.encoded.as_bytes();
    // percent_decode passes malformed escapes through unchanged; an agent is better served
    // by being told where its input is broken.
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                let char_pos = input.encoded[..i].chars().count();
                return Err(Error::invalid_input(format!(
                    "`encoded` has a malformed percent-escape at character {char_pos}: `%` must be followed by two hex digits (write `%25` for a literal `%`)"
                )));
            }
        }
    }
    let source = if input.mode == UrlMode::Form {
        input.encoded.replace('+', " ")
    } else {
        input.encoded
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(&source).collect();
    bytes_out(decoded, BytesOutput::Text)
}

fn html_encode(input: TextIn) -> Result<EncodedOut, Error> {
    Ok(EncodedOut {
        encoded: html_escape::encode_quoted_attribute(&input.text).into_owned(),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HtmlDecodeIn {
    /// Text with HTML entities: named (`&amp;`, `&eacute;`), decimal (`&#233;`) or hex
    /// (`&#xE9;`).
    encoded: String,
}

fn html_decode(input: HtmlDecodeIn) -> Result<DecodedOut, Error> {
    Ok(DecodedOut {
        decoded: html_escape::decode_html_entities(&input.encoded).into_owned(),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JwtIn {
    /// A JWT in compact form: `header.payload.signature` (base64url parts). A leading
    /// `Bearer ` is ignored.
    token: String,
}

#[derive(Serialize, JsonSchema)]
struct JwtOut {
    /// The decoded JOSE header, e.g. `{"alg": "HS256", "typ": "JWT"}`.
    header: Map<String, Value>,
    /// The decoded claims, e.g. `{"sub": "...", "exp": 1700000000}`. Not verified.
    payload: Value,
    /// The signature part exactly as it appears in the token (base64url); empty for an
    /// unsecured (`alg: none`) token.
    signature: String,
}

fn jwt_decode(input: JwtIn) -> Result<JwtOut, Error> {
    let token = input.token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(Error::invalid_input(
                "this is an encrypted JWT (JWE, five parts); its payload cannot be read without the key",
            ))
        }
        n => {
            return Err(Error::invalid_input(format!(
                "`token` is not a JWT: expected three base64url parts separated by dots (header.payload.signature), found {n}"
            )))
        }
    }
    let engine = lenient_engine(&base64::alphabet::URL_SAFE);
    let part_json = |index: usize, name: &str| -> Result<Value, Error> {
        let bytes = engine.decode(parts[index]).map_err(|e| {
            Error::invalid_input(format!("the JWT {name} is not valid base64url: {e}"))
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid_input(format!("the JWT {name} is not JSON: {e}")))
    };
    let header = match part_json(0, "header")? {
        Value::Object(map) => map,
        _ => return Err(Error::invalid_input("the JWT header is not a JSON object")),
    };
    let payload = part_json(1, "payload")?;
    Ok(JwtOut {
        header,
        payload,
        signature: parts[2].to_string(),
    })
}

/// The ForgeHook, as the component exports it and as tests invoke it.
pub fn hook() -> ForgeHook {
    ForgeHook::new(
        "encoding-utils",
        "Encoding utilities",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Encode and decode text: base64, base64url, hex, URL percent-encoding, HTML entities, \
             and read the header and claims of a JWT (without verifying it). Encoders take \
             `text` and return `encoded`; decoders take `encoded` and return `decoded`.",
    )
    .category("data")
    .tags(&["encoding", "base64", "hex", "url", "html", "jwt"])
    .author("LeForge")
    .endpoint(
        "base64_encode",
        "Encodes text (its UTF-8 bytes) as standard base64 with `=` padding (alphabet \
             A-Z a-z 0-9 + /). For URLs, file names and JWTs use base64url_encode.",
        base64_encode,
    )
    .endpoint(
        "base64_decode",
        "Decodes standard base64 (padding optional, whitespace and line breaks ignored) to \
             UTF-8 text, or to hex with \"output\": \"hex\" for binary data.",
        base64_decode,
    )
    .endpoint(
        "base64url_encode",
        "Encodes text (its UTF-8 bytes) as URL-safe base64 (alphabet A-Z a-z 0-9 - _), \
             without padding unless `padding` is true, as used in JWTs and URLs.",
        base64url_encode,
    )
    .endpoint(
        "base64url_decode",
        "Decodes URL-safe base64 (padding optional) to UTF-8 text, or to hex with \
             \"output\": \"hex\" for binary data.",
        base64url_decode,
    )
    .endpoint(
        "hex_encode",
        "Encodes text (its UTF-8 bytes) as hexadecimal, two digits per byte (lowercase \
             unless `uppercase`).",
        hex_encode,
    )
    .endpoint(
        "hex_decode",
        "Decodes hexadecimal (two digits per byte, optional 0x prefix) to UTF-8 text.",
        hex_decode,
    )
    .endpoint(
        "url_encode",
        "Percent-encodes text for use in a URL: `component` mode (default) for a path \
             segment or query parameter value (space becomes %20), `form` mode for \
             application/x-www-form-urlencoded (space becomes +).",
        url_encode,
    )
    .endpoint(
        "url_decode",
        "Decodes percent-encoded URL text (e.g. `caf%C3%A9` to `café`); in `form` mode `+` \
             also becomes a space. Malformed escapes are an error.",
        url_decode,
    )
    .endpoint(
        "html_encode",
        "Escapes text for safe insertion into HTML content or a quoted attribute: & < > \" ' \
             become &amp; &lt; &gt; &quot; &#x27;.",
        html_encode,
    )
    .endpoint(
        "html_decode",
        "Replaces HTML entities with the characters they stand for: named (&amp; &nbsp; \
             &eacute;), decimal (&#233;) and hexadecimal (&#xE9;). Unknown entities are kept.",
        html_decode,
    )
    .endpoint(
        "jwt_decode",
        "Decodes a JSON Web Token (JWT) and returns its header and payload (claims such as \
             sub, iss, exp, iat) so you can inspect them. It does NOT verify the signature: \
             the claims are untrusted and must not be used to make security decisions.",
        jwt_decode,
    )
}

forgehook!(hook);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(endpoint: &str, input: Value) -> Result<Value, Error> {
        hook()
            .invoke(endpoint, &input.to_string())
            .map(|out| serde_json::from_str(&out).unwrap())
    }

    fn ok(endpoint: &str, input: Value) -> Value {
        call(endpoint, input).unwrap()
    }

    fn err(endpoint: &str, input: Value) -> Error {
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
        assert_eq!(m["id"], "encoding-utils");
        let names: Vec<&str> = m["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "base64_encode",
                "base64_decode",
                "base64url_encode",
                "base64url_decode",
                "hex_encode",
                "hex_decode",
                "url_encode",
                "url_decode",
                "html_encode",
                "html_decode",
                "jwt_decode"
            ]
        );
        let jwt = &m["endpoints"][10];
        assert!(jwt["description"]
            .as_str()
            .unwrap()
            .contains("does NOT verify the signature"));
        assert_eq!(jwt["input_schema"]["required"], json!(["token"]));
        assert_eq!(
            jwt["output_schema"]["required"],
            json!(["header", "payload", "signature"])
        );
        let b64d = &m["endpoints"][1]["input_schema"];
        assert_eq!(b64d["properties"]["output"]["default"], "text");
        assert_eq!(b64d["additionalProperties"], false);
    }

    #[test]
    fn base64_round_trip_and_rfc4648_vectors() {
        // RFC 4648 section 10.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(
                ok("base64_encode", json!({"text": plain})),
                json!({"encoded": enc})
            );
            assert_eq!(
                ok("base64_decode", json!({"encoded": enc})),
                json!({"decoded": plain})
            );
        }
        // Unpadded and line-wrapped input decodes too.
        assert_eq!(
            ok("base64_decode", json!({"encoded": "Zm9vYg"})),
            json!({"decoded": "foob"})
        );
        assert_eq!(
            ok("base64_decode", json!({"encoded": "Zm9v\r\nYmFy\n"})),
            json!({"decoded": "foobar"})
        );
        assert_eq!(
            ok("base64_encode", json!({"text": "héllo ✓"})),
            json!({"encoded": "aMOpbGxvIOKckw=="})
        );
    }

    #[test]
    fn base64_decode_binary_and_errors() {
        // 0xff 0xfe is not UTF-8.
        let e = err("base64_decode", json!({"encoded": "//4="}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert_eq!(
            e.message,
            "the decoded bytes are not UTF-8 text (invalid byte at offset 0); pass \"output\": \"hex\" to get binary data as hex"
        );
        assert_eq!(
            ok("base64_decode", json!({"encoded": "//4=", "output": "hex"})),
            json!({"decoded": "fffe"})
        );
        let e = err("base64_decode", json!({"encoded": "ab$c"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message
                .starts_with("`encoded` is not valid base64: Invalid symbol 36, offset 2"),
            "{}",
            e.message
        );
        let e = err("base64_decode", json!({"encoded": "__4"}));
        assert!(
            e.message
                .ends_with("(`_` belongs to the other alphabet; try base64url_decode)"),
            "{}",
            e.message
        );
        let e = err("base64_decode", json!({"encoded": "Zm9vY"}));
        assert_eq!(e.code, "INVALID_INPUT");
        let e = err("base64_decode", json!({"encoded": 12}));
        assert!(
            e.message.starts_with("at `encoded`: invalid type"),
            "{}",
            e.message
        );
        let e = err(
            "base64_decode",
            json!({"encoded": "Zg==", "output": "binary"}),
        );
        assert!(
            e.message
                .starts_with("at `output`: unknown variant `binary`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn base64url_without_padding() {
        // 0xfb 0xff as text is impossible, so use text whose base64 has + and /: "?>?~" and "ÿ".
        assert_eq!(
            ok("base64url_encode", json!({"text": "<<???>>"})),
            json!({"encoded": "PDw_Pz8-Pg"})
        );
        assert_eq!(
            ok("base64_encode", json!({"text": "<<???>>"})),
            json!({"encoded": "PDw/Pz8+Pg=="})
        );
        assert_eq!(
            ok(
                "base64url_encode",
                json!({"text": "<<???>>", "padding": true})
            ),
            json!({"encoded": "PDw_Pz8-Pg=="})
        );
        for enc in ["PDw_Pz8-Pg", "PDw_Pz8-Pg=="] {
            assert_eq!(
                ok("base64url_decode", json!({"encoded": enc})),
                json!({"decoded": "<<???>>"})
            );
        }
        let e = err("base64url_decode", json!({"encoded": "PDw/Pz8+Pg"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message
                .ends_with("(`/` belongs to the other alphabet; try base64_decode)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn hex() {
        assert_eq!(
            ok("hex_encode", json!({"text": "Hi ✓"})),
            json!({"encoded": "486920e29c93"})
        );
        assert_eq!(
            ok("hex_encode", json!({"text": "Hi ✓", "uppercase": true})),
            json!({"encoded": "486920E29C93"})
        );
        for enc in ["486920e29c93", "0x486920E29C93", " 48 69 20 e2 9c 93 "] {
            assert_eq!(
                ok("hex_decode", json!({"encoded": enc})),
                json!({"decoded": "Hi ✓"})
            );
        }
        assert_eq!(
            err("hex_decode", json!({"encoded": "abc"})),
            Error::invalid_input("`encoded` is not valid hex: Odd number of digits")
        );
        assert_eq!(
            err("hex_decode", json!({"encoded": "zz"})),
            Error::invalid_input("`encoded` is not valid hex: Invalid character 'z' at position 0")
        );
        assert_eq!(
            err("hex_decode", json!({"encoded": "ff"})).code,
            "INVALID_INPUT"
        );
    }

    #[test]
    fn url() {
        assert_eq!(
            ok("url_encode", json!({"text": "café au lait & more/?=~*'"})),
            json!({"encoded": "caf%C3%A9%20au%20lait%20%26%20more%2F%3F%3D~%2A%27"})
        );
        assert_eq!(
            ok("url_encode", json!({"text": "a b+c*~", "mode": "form"})),
            json!({"encoded": "a+b%2Bc*%7E"})
        );
        assert_eq!(
            ok("url_decode", json!({"encoded": "caf%C3%A9%20au+lait"})),
            json!({"decoded": "café au+lait"})
        );
        assert_eq!(
            ok(
                "url_decode",
                json!({"encoded": "caf%c3%a9+au+lait", "mode": "form"})
            ),
            json!({"decoded": "café au lait"})
        );
        assert_eq!(
            err("url_decode", json!({"encoded": "é100%"})),
            Error::invalid_input(
                "`encoded` has a malformed percent-escape at character 4: `%` must be followed by two hex digits (write `%25` for a literal `%`)"
            )
        );
        assert_eq!(
            err("url_decode", json!({"encoded": "%zz"})).code,
            "INVALID_INPUT"
        );
        // %FF is not UTF-8.
        assert_eq!(
            err("url_decode", json!({"encoded": "%FF"})).code,
            "INVALID_INPUT"
        );
        assert_eq!(
            err("url_encode", json!({"text": "x", "mode": "path"})).code,
            "INVALID_INPUT"
        );
    }

    #[test]
    fn html() {
        assert_eq!(
            ok(
                "html_encode",
                json!({"text": "<a href=\"x\">Tom & Jerry's</a>"})
            ),
            json!({"encoded": "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#x27;s&lt;/a&gt;"})
        );
        assert_eq!(
            ok(
                "html_decode",
                json!({"encoded": "&lt;b&gt;caf&eacute; &amp; cr&#232;me &#xE9;&nbsp;&bogus;"})
            ),
            json!({"decoded": "<b>café & crème é\u{a0}&bogus;"})
        );
        assert_eq!(
            err("html_decode", json!({"text": "x"})).code,
            "INVALID_INPUT"
        );
    }

    // From jwt.io: HS256, payload {"sub":"1234567890","name":"John Doe","iat":1516239022}.
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn jwt_decode_known_token() {
        let expected = json!({
            "header": {"alg": "HS256", "typ": "JWT"},
            "payload": {"sub": "1234567890", "name": "John Doe", "iat": 1516239022},
            "signature": "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        });
        assert_eq!(ok("jwt_decode", json!({"token": JWT})), expected);
        assert_eq!(
            ok("jwt_decode", json!({"token": format!("Bearer {JWT}\n")})),
            expected
        );
        // An unsecured token has an empty signature part.
        assert_eq!(
            ok(
                "jwt_decode",
                json!({"token": "eyJhbGciOiJub25lIn0.eyJhIjoxfQ."})
            ),
            json!({"header": {"alg": "none"}, "payload": {"a": 1}, "signature": ""})
        );
    }

    #[test]
    fn jwt_decode_rejects_malformed() {
        assert_eq!(
            err("jwt_decode", json!({"token": "abc"})),
            Error::invalid_input(
                "`token` is not a JWT: expected three base64url parts separated by dots (header.payload.signature), found 1"
            )
        );
        assert_eq!(
            err("jwt_decode", json!({"token": "a.b.c.d.e"})),
            Error::invalid_input(
                "this is an encrypted JWT (JWE, five parts); its payload cannot be read without the key"
            )
        );
        let e = err("jwt_decode", json!({"token": "e$.eyJhIjoxfQ.x"}));
        assert!(
            e.message
                .starts_with("the JWT header is not valid base64url"),
            "{}",
            e.message
        );
        // "bm90IGpzb24" is "not json".
        let e = err(
            "jwt_decode",
            json!({"token": "eyJhbGciOiJub25lIn0.bm90IGpzb24.x"}),
        );
        assert!(
            e.message.starts_with("the JWT payload is not JSON"),
            "{}",
            e.message
        );
        // "WzFd" is "[1]".
        assert_eq!(
            err("jwt_decode", json!({"token": "WzFd.eyJhIjoxfQ.x"})),
            Error::invalid_input("the JWT header is not a JSON object")
        );
        assert_eq!(err("jwt_decode", json!({})).code, "INVALID_INPUT");
    }
}
