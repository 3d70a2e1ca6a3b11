//! `crypto-utils`: message digests, HMAC, UUIDs and random strings.
//!
//! Randomness comes from WASI `random` (through getrandom), which the host backs with its own
//! CSPRNG; the UUID v7 timestamp comes from the host clock (`now-ms`), not from a WASI clock,
//! so every time a ForgeHook sees is the one the host decides.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use leforge_forgehook_sdk::{forgehook, Error, ForgeHook};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

// Input enums derive Serialize so that schemars can write their `default`s into the schema,
// and their variants carry no doc comments: schemars would turn those into a `oneOf` of
// `const`s, which LLM providers handle worse than a plain `enum`. The field docs list the
// choices instead.

/// The most UUIDs one call returns; enough for bulk use, small enough to bound the output.
const MAX_UUIDS: u32 = 1_000;
/// The longest random string one call returns.
const MAX_RANDOM_LENGTH: u32 = 4_096;
/// Bounds rejection-sampling work and the schema's promise for `custom_charset`.
const MAX_CUSTOM_CHARSET: usize = 256;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Algorithm {
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum OutputEncoding {
    #[default]
    Hex,
    Base64,
}

impl OutputEncoding {
    fn encode(self, bytes: &[u8]) -> String {
        match self {
            OutputEncoding::Hex => hex::encode(bytes),
            OutputEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HashIn {
    /// The digest algorithm. Prefer sha256; sha1 and md5 are broken for security purposes and
    /// only fit checksums or legacy systems.
    algorithm: Algorithm,
    /// The text to hash, taken as its UTF-8 bytes.
    data: String,
    /// How to write the digest: lowercase hex or standard base64 (with padding).
    #[serde(default)]
    encoding: OutputEncoding,
}

#[derive(Serialize, JsonSchema)]
struct HashOut {
    /// The digest of `data`, in the requested encoding.
    hash: String,
}

fn digest(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        Algorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        Algorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
        Algorithm::Md5 => md5::Md5::digest(data).to_vec(),
    }
}

fn hash(input: HashIn) -> Result<HashOut, Error> {
    Ok(HashOut {
        hash: input
            .encoding
            .encode(&digest(input.algorithm, input.data.as_bytes())),
    })
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum KeyEncoding {
    // The key is the UTF-8 bytes of the text.
    #[default]
    Utf8,
    // The key is hex (e.g. `0b0b0b`).
    Hex,
    // The key is standard base64 (padding optional).
    Base64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HmacIn {
    /// The hash function of the HMAC (HMAC-SHA256 is the common choice, e.g. for webhook
    /// signatures).
    algorithm: Algorithm,
    /// The secret key, written as `key_encoding` says.
    key: String,
    /// The message to authenticate, taken as its UTF-8 bytes.
    data: String,
    /// How `key` is written: `utf8` text (default), `hex`, or `base64`.
    #[serde(default)]
    key_encoding: KeyEncoding,
    /// How to write the MAC: lowercase hex or standard base64 (with padding).
    #[serde(default)]
    encoding: OutputEncoding,
}

#[derive(Serialize, JsonSchema)]
struct HmacOut {
    /// The HMAC of `data` under `key`, in the requested encoding.
    hmac: String,
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    // HMAC accepts keys of any length (long keys are hashed first), so this error is
    // unreachable; it is mapped rather than unwrapped so no input can ever trap.
    let mut m = <M as Mac>::new_from_slice(key)
        .map_err(|e| Error::new(Error::INTERNAL, format!("HMAC rejected the key: {e}")))?;
    m.update(data);
    Ok(m.finalize().into_bytes().to_vec())
}

fn hmac(input: HmacIn) -> Result<HmacOut, Error> {
    let key = match input.key_encoding {
        KeyEncoding::Utf8 => input.key.into_bytes(),
        KeyEncoding::Hex => hex::decode(input.key.trim())
            .map_err(|e| Error::invalid_input(format!("`key` is not valid hex: {e}")))?,
        KeyEncoding::Base64 => base64_lenient(input.key.trim())
            .map_err(|e| Error::invalid_input(format!("`key` is not valid base64: {e}")))?,
    };
    let data = input.data.as_bytes();
    let bytes = match input.algorithm {
        Algorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(&key, data),
        Algorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(&key, data),
        Algorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(&key, data),
        Algorithm::Md5 => mac::<Hmac<md5::Md5>>(&key, data),
    }?;
    Ok(HmacOut {
        hmac: input.encoding.encode(&bytes),
    })
}

/// Standard base64 with or without padding, since keys are pasted both ways.
fn base64_lenient(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(s)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum UuidVersion {
    // Fully random.
    #[default]
    V4,
    // Time-ordered: starts with the current Unix time in milliseconds, so the UUIDs sort by
    // creation time (good database keys).
    V7,
}

fn default_count() -> u32 {
    1
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UuidIn {
    /// `v4` (random, the default) or `v7` (time-ordered: starts with the current Unix time in
    /// milliseconds, so the UUIDs sort by creation time, which suits database keys).
    #[serde(default)]
    version: UuidVersion,
    /// How many UUIDs to generate, 1 to 1000.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 1000))]
    count: u32,
}

#[derive(Serialize, JsonSchema)]
struct UuidOut {
    /// The UUIDs, lowercase and hyphenated (`xxxxxxxx-xxxx-Mxxx-Nxxx-xxxxxxxxxxxx`); v7 UUIDs
    /// are listed in ascending order.
    uuids: Vec<String>,
}

fn random_bytes(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| {
        Error::new(
            "RANDOM_UNAVAILABLE",
            format!("the host gave no randomness: {e}"),
        )
    })
}

/// Milliseconds since the Unix epoch: the host clock inside a component; the system clock
/// in native unit tests, where host functions do not exist.
fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        leforge_forgehook_sdk::host::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

fn uuid(input: UuidIn) -> Result<UuidOut, Error> {
    if input.count == 0 || input.count > MAX_UUIDS {
        return Err(Error::invalid_input(format!(
            "`count` must be between 1 and {MAX_UUIDS}, got {}",
            input.count
        )));
    }
    let count = input.count as usize;
    let mut uuids = Vec::with_capacity(count);
    match input.version {
        UuidVersion::V4 => {
            for _ in 0..count {
                let mut bytes = [0u8; 16];
                random_bytes(&mut bytes)?;
                uuids.push(uuid::Builder::from_random_bytes(bytes).into_uuid());
            }
        }
        UuidVersion::V7 => {
            let ms = now_ms();
            for _ in 0..count {
                let mut bytes = [0u8; 10];
                random_bytes(&mut bytes)?;
                uuids.push(uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid());
            }
            // Within one millisecond the random bits decide the order; sorting makes a batch
            // monotonic, which is what callers of v7 rely on.
            uuids.sort();
        }
    }
    Ok(UuidOut {
        uuids: uuids
            .into_iter()
            .map(|u| u.hyphenated().to_string())
            .collect(),
    })
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Charset {
    // A-Z, a-z, 0-9.
    #[default]
    Alphanumeric,
    // A-Z, a-z.
    Alpha,
    // a-z.
    Lowercase,
    // A-Z.
    Uppercase,
    // 0-9.
    Numeric,
    // 0-9, a-f.
    Hex,
    // A-Z, a-z, 0-9, `-`, `_` (URL- and filename-safe).
    Base64url,
    // Every printable ASCII character except space (`!` to `~`), e.g. for passwords.
    Printable,
}

impl Charset {
    fn chars(self) -> Vec<char> {
        let range = |a: char, b: char| (a..=b).collect::<Vec<char>>();
        match self {
            Charset::Alphanumeric => [range('A', 'Z'), range('a', 'z'), range('0', '9')].concat(),
            Charset::Alpha => [range('A', 'Z'), range('a', 'z')].concat(),
            Charset::Lowercase => range('a', 'z'),
            Charset::Uppercase => range('A', 'Z'),
            Charset::Numeric => range('0', '9'),
            Charset::Hex => [range('0', '9'), range('a', 'f')].concat(),
            Charset::Base64url => [
                range('A', 'Z'),
                range('a', 'z'),
                range('0', '9'),
                vec!['-', '_'],
            ]
            .concat(),
            Charset::Printable => range('!', '~'),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RandomStringIn {
    /// Number of characters, 1 to 4096.
    #[schemars(range(min = 1, max = 4096))]
    length: u32,
    /// Which characters to draw from: `alphanumeric` (A-Z a-z 0-9, the default), `alpha`
    /// (A-Z a-z), `lowercase` (a-z), `uppercase` (A-Z), `numeric` (0-9), `hex` (0-9 a-f),
    /// `base64url` (A-Z a-z 0-9 - _), `printable` (ASCII `!` to `~`, for passwords). Ignored
    /// when `custom_charset` is given.
    #[serde(default)]
    charset: Charset,
    /// Draw from exactly these characters instead (duplicates are ignored; 1 to 256 distinct
    /// characters).
    #[serde(default)]
    custom_charset: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct RandomStringOut {
    /// The random string; every character is drawn uniformly and independently from a
    /// cryptographically secure source.
    value: String,
}

fn random_string(input: RandomStringIn) -> Result<RandomStringOut, Error> {
    if input.length == 0 || input.length > MAX_RANDOM_LENGTH {
        return Err(Error::invalid_input(format!(
            "`length` must be between 1 and {MAX_RANDOM_LENGTH}, got {}",
            input.length
        )));
    }
    let alphabet: Vec<char> = match &input.custom_charset {
        Some(custom) => {
            let mut seen = Vec::new();
            for c in custom.chars() {
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
            if seen.is_empty() || seen.len() > MAX_CUSTOM_CHARSET {
                return Err(Error::invalid_input(format!(
                    "`custom_charset` must contain 1 to {MAX_CUSTOM_CHARSET} distinct characters, got {}",
                    seen.len()
                )));
            }
            seen
        }
        None => input.charset.chars(),
    };
    let n = alphabet.len();
    // Rejection sampling: bytes at or above the largest multiple of `n` are dropped so that
    // every character is equally likely (a plain `% n` would favour the first ones).
    let limit = 256 - (256 % n);
    let mut value = String::with_capacity(input.length as usize);
    let mut produced = 0;
    let mut buf = [0u8; 64];
    while produced < input.length {
        random_bytes(&mut buf)?;
        for &b in &buf {
            if (b as usize) < limit && produced < input.length {
                value.push(alphabet[b as usize % n]);
                produced += 1;
            }
        }
    }
    Ok(RandomStringOut { value })
}

/// The ForgeHook, as the component exports it and as tests invoke it.
pub fn hook() -> ForgeHook {
    ForgeHook::new(
        "crypto-utils",
        "Crypto utilities",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Cryptographic helpers: message digests (SHA-256, SHA-512, SHA-1, MD5), HMAC \
             signatures, UUIDs (v4 random, v7 time-ordered) and secure random strings.",
    )
    .category("security")
    .tags(&["crypto", "hash", "hmac", "uuid", "random"])
    .author("LeForge")
    .endpoint(
        "hash",
        "Computes the digest of a text (its UTF-8 bytes) with sha256, sha512, sha1 or md5, \
             returned as lowercase hex (default) or base64. Use for checksums, cache keys, or \
             comparing content. Not for passwords (no salt, fast hashes).",
        hash,
    )
    .endpoint(
        "hmac",
        "Computes an HMAC (keyed hash) of a text with sha256, sha512, sha1 or md5, e.g. to \
             sign a request or to check a webhook signature by computing it and comparing. The \
             key is UTF-8 text by default, or hex/base64 via `key_encoding`; the result is \
             lowercase hex (default) or base64.",
        hmac,
    )
    .endpoint(
        "uuid",
        "Generates UUIDs: version v4 (random, default) or v7 (time-ordered, sortable by \
             creation time; uses the server clock). `count` generates up to 1000 at once.",
        uuid,
    )
    .endpoint(
        "random_string",
        "Generates a cryptographically secure random string of `length` characters drawn \
             from a named `charset` (alphanumeric by default; also alpha, lowercase, uppercase, \
             numeric, hex, base64url, printable) or from `custom_charset`. Use for passwords, \
             tokens, and ids.",
        random_string,
    )
}

forgehook!(hook);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn call(endpoint: &str, input: Value) -> Result<Value, Error> {
        hook()
            .invoke(endpoint, &input.to_string())
            .map(|out| serde_json::from_str(&out).unwrap())
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
        assert_eq!(m["id"], "crypto-utils");
        let names: Vec<&str> = m["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["hash", "hmac", "uuid", "random_string"]);
        let hash = &m["endpoints"][0]["input_schema"];
        assert_eq!(hash["type"], "object");
        assert_eq!(hash["required"], json!(["algorithm", "data"]));
        assert_eq!(
            hash["properties"]["algorithm"]["enum"],
            json!(["sha256", "sha512", "sha1", "md5"])
        );
        assert_eq!(hash["properties"]["encoding"]["default"], "hex");
        assert_eq!(
            hash["properties"]["encoding"]["enum"],
            json!(["hex", "base64"])
        );
        assert_eq!(
            m["endpoints"][0]["output_schema"]["required"],
            json!(["hash"])
        );
        for ep in m["endpoints"].as_array().unwrap() {
            assert!(ep["description"].as_str().unwrap().len() > 40);
            assert_eq!(ep["input_schema"]["type"], "object");
        }
    }

    #[test]
    fn hash_known_answers() {
        let cases = [
            (
                "sha256",
                "abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "sha256",
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "sha512",
                "abc",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            ("sha1", "abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            ("md5", "", "d41d8cd98f00b204e9800998ecf8427e"),
            ("md5", "abc", "900150983cd24fb0d6963f7d28e17f72"),
        ];
        for (algorithm, data, expected) in cases {
            assert_eq!(
                call("hash", json!({"algorithm": algorithm, "data": data})).unwrap(),
                json!({"hash": expected}),
                "{algorithm}({data:?})"
            );
        }
    }

    #[test]
    fn hash_utf8_and_base64() {
        // SHA-256 of "abc" as base64.
        assert_eq!(
            call(
                "hash",
                json!({"algorithm": "sha256", "data": "abc", "encoding": "base64"})
            )
            .unwrap(),
            json!({"hash": "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="})
        );
        // Non-ASCII text hashes as UTF-8: md5("é") = md5(0xc3 0xa9).
        assert_eq!(
            call("hash", json!({"algorithm": "md5", "data": "é"})).unwrap()["hash"],
            hex::encode(md5::Md5::digest([0xc3, 0xa9]))
        );
    }

    #[test]
    fn hash_rejects_bad_input() {
        let e = err("hash", json!({"algorithm": "sha3", "data": "x"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message
                .starts_with("at `algorithm`: unknown variant `sha3`"),
            "{}",
            e.message
        );
        let e = err("hash", json!({"algorithm": "sha256"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(e.message.contains("missing field `data`"), "{}", e.message);
        let e = err(
            "hash",
            json!({"algorithm": "sha256", "data": "x", "encoding": "base32"}),
        );
        assert_eq!(e.code, "INVALID_INPUT");
        let e = err("hash", json!({"algorithm": "sha256", "data": 5}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.starts_with("at `data`: invalid type"),
            "{}",
            e.message
        );
        let e = err(
            "hash",
            json!({"algorithm": "sha256", "data": "x", "salt": "y"}),
        );
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(e.message.contains("unknown field `salt`"), "{}", e.message);
    }

    #[test]
    fn hmac_rfc4231_sha256_and_sha512() {
        // RFC 4231 test case 1: key = 0x0b * 20, data = "Hi There".
        let key1 = "0b".repeat(20);
        assert_eq!(
            call("hmac", json!({"algorithm": "sha256", "key": key1, "key_encoding": "hex", "data": "Hi There"})).unwrap(),
            json!({"hmac": "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"})
        );
        assert_eq!(
            call("hmac", json!({"algorithm": "sha512", "key": key1, "key_encoding": "hex", "data": "Hi There"})).unwrap(),
            json!({"hmac": "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                            daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"})
        );
        // Test case 2: key = "Jefe".
        assert_eq!(
            call("hmac", json!({"algorithm": "sha256", "key": "Jefe", "data": "what do ya want for nothing?"})).unwrap(),
            json!({"hmac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"})
        );
        // Test case 6: a 131-byte key, longer than the block, is hashed first.
        assert_eq!(
            call(
                "hmac",
                json!({
                    "algorithm": "sha256",
                    "key": "aa".repeat(131),
                    "key_encoding": "hex",
                    "data": "Test Using Larger Than Block-Size Key - Hash Key First"
                })
            )
            .unwrap(),
            json!({"hmac": "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"})
        );
    }

    #[test]
    fn hmac_rfc2202_sha1_md5_and_base64() {
        // RFC 2202 test case 2 for HMAC-SHA1 and HMAC-MD5.
        let jefe = |alg: &str| {
            call(
                "hmac",
                json!({"algorithm": alg, "key": "Jefe", "data": "what do ya want for nothing?"}),
            )
            .unwrap()["hmac"]
                .clone()
        };
        assert_eq!(jefe("sha1"), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        assert_eq!(jefe("md5"), "750c783e6ab0b503eaa86e310a5db738");
        // Same key given as base64 ("SmVmZQ==" is "Jefe"), unpadded too; output in base64.
        for key in ["SmVmZQ==", "SmVmZQ"] {
            assert_eq!(
                call(
                    "hmac",
                    json!({
                        "algorithm": "sha256", "key": key, "key_encoding": "base64",
                        "data": "what do ya want for nothing?", "encoding": "base64"
                    })
                )
                .unwrap(),
                json!({"hmac": "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="})
            );
        }
    }

    #[test]
    fn hmac_rejects_bad_keys() {
        let e = err(
            "hmac",
            json!({"algorithm": "sha256", "key": "zz", "key_encoding": "hex", "data": "x"}),
        );
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.starts_with("`key` is not valid hex"),
            "{}",
            e.message
        );
        let e = err(
            "hmac",
            json!({"algorithm": "sha256", "key": "!!!", "key_encoding": "base64", "data": "x"}),
        );
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.starts_with("`key` is not valid base64"),
            "{}",
            e.message
        );
        let e = err("hmac", json!({"algorithm": "sha256", "data": "x"}));
        assert!(e.message.contains("missing field `key`"), "{}", e.message);
    }

    fn parse_uuid(s: &Value) -> uuid::Uuid {
        let s = s.as_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(s, s.to_lowercase());
        uuid::Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn uuid_v4_default() {
        let out = call("uuid", json!({})).unwrap();
        let list = out["uuids"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        let u = parse_uuid(&list[0]);
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);

        let out = call("uuid", json!({"version": "v4", "count": 50})).unwrap();
        let mut all: Vec<uuid::Uuid> = out["uuids"]
            .as_array()
            .unwrap()
            .iter()
            .map(parse_uuid)
            .collect();
        assert!(all.iter().all(|u| u.get_version_num() == 4));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 50);
    }

    #[test]
    fn uuid_v7_is_time_ordered() {
        let before = now_ms();
        let out = call("uuid", json!({"version": "v7", "count": 20})).unwrap();
        let after = now_ms();
        let list: Vec<uuid::Uuid> = out["uuids"]
            .as_array()
            .unwrap()
            .iter()
            .map(parse_uuid)
            .collect();
        assert_eq!(list.len(), 20);
        for u in &list {
            assert_eq!(u.get_version_num(), 7);
            let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
            let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(
                ms >= before && ms <= after,
                "{ms} not in {before}..={after}"
            );
        }
        assert!(list.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn uuid_rejects_bad_input() {
        for count in [0, 1001] {
            let e = err("uuid", json!({"count": count}));
            assert_eq!(
                e,
                Error::invalid_input(format!("`count` must be between 1 and 1000, got {count}"))
            );
        }
        let e = err("uuid", json!({"version": "v1"}));
        assert_eq!(e.code, "INVALID_INPUT");
        assert!(
            e.message.starts_with("at `version`: unknown variant `v1`"),
            "{}",
            e.message
        );
        let e = err("uuid", json!({"count": -1}));
        assert_eq!(e.code, "INVALID_INPUT");
    }

    #[test]
    fn random_string_charsets() {
        let cases: [(&str, &dyn Fn(char) -> bool); 8] = [
            ("alphanumeric", &|c| c.is_ascii_alphanumeric()),
            ("alpha", &|c| c.is_ascii_alphabetic()),
            ("lowercase", &|c| c.is_ascii_lowercase()),
            ("uppercase", &|c| c.is_ascii_uppercase()),
            ("numeric", &|c| c.is_ascii_digit()),
            ("hex", &|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            ("base64url", &|c| {
                c.is_ascii_alphanumeric() || c == '-' || c == '_'
            }),
            ("printable", &|c| c.is_ascii_graphic()),
        ];
        for (charset, ok) in cases {
            let out = call("random_string", json!({"length": 500, "charset": charset})).unwrap();
            let s = out["value"].as_str().unwrap();
            assert_eq!(s.chars().count(), 500, "{charset}");
            assert!(s.chars().all(ok), "{charset}: {s}");
        }
        let out = call("random_string", json!({"length": 32})).unwrap();
        assert_eq!(out["value"].as_str().unwrap().len(), 32);
        assert!(out["value"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn random_string_custom_charset() {
        let out = call(
            "random_string",
            json!({"length": 300, "custom_charset": "ab€ab"}),
        )
        .unwrap();
        let s = out["value"].as_str().unwrap();
        assert_eq!(s.chars().count(), 300);
        assert!(s.chars().all(|c| matches!(c, 'a' | 'b' | '€')));
        let out = call("random_string", json!({"length": 5, "custom_charset": "x"})).unwrap();
        assert_eq!(out, json!({"value": "xxxxx"}));
    }

    #[test]
    fn random_string_rejects_bad_input() {
        for length in [0, 4097] {
            assert_eq!(
                err("random_string", json!({"length": length})),
                Error::invalid_input(format!("`length` must be between 1 and 4096, got {length}"))
            );
        }
        assert_eq!(
            err("random_string", json!({"length": 4, "custom_charset": ""})),
            Error::invalid_input(
                "`custom_charset` must contain 1 to 256 distinct characters, got 0"
            )
        );
        let e = err("random_string", json!({"length": 4, "charset": "emoji"}));
        assert_eq!(e.code, "INVALID_INPUT");
        let e = err("random_string", json!({}));
        assert!(
            e.message.contains("missing field `length`"),
            "{}",
            e.message
        );
    }
}
