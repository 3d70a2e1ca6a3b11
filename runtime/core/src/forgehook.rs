//! The ForgeHook manifest (`forgehook.json`, also what a component's `describe` returns) and
//! the rules that keep one valid, whichever runtime (WASM today; container and gateway later)
//! executes the ForgeHook.
//!
//! It is a superset of LeForge upstream's public manifest, so upstream manifests keep their
//! meaning; unknown fields are ignored rather than rejected for the same reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::validation::FieldError;

/// Longest ForgeHook id. Together with [`MAX_ENDPOINT_NAME_LEN`] and the `__` separator it
/// keeps `<id>__<endpoint>` within the 64 characters that LLM providers allow in a tool name.
pub const MAX_ID_LEN: usize = 30;
pub const MAX_ENDPOINT_NAME_LEN: usize = 32;
/// Separator between the ForgeHook id and the endpoint name in the tool names an LLM sees.
pub const TOOL_NAME_SEPARATOR: &str = "__";

pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MEMORY_MB: u64 = 64;
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 4 * 1024 * 1024;

/// What executes a ForgeHook. Only `wasm` exists now; `container` and `gateway` are added by
/// the container runtime issue, hence `non_exhaustive` so matches elsewhere keep compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuntimeKind {
    #[default]
    Wasm,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Wasm => "wasm",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ForgeHook's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    /// Lowercase letters, digits and single hyphens, starting with a letter (e.g. `data-transform`).
    pub id: String,
    pub name: String,
    /// Semantic version; a higher version of an installed id is an upgrade.
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub runtime: RuntimeKind,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub author: String,
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// One callable operation; each becomes one tool the LLM can choose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// snake_case, e.g. `csv_to_json`.
    pub name: String,
    /// Written for an LLM choosing between tools: what it does and when to use it.
    pub description: String,
    /// JSON Schema of the input; must describe an object (LLM tool parameters are objects).
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// JSON Schema of the output.
    #[schema(value_type = Object)]
    pub output_schema: Value,
}

/// What a ForgeHook asks the host for. Anything not listed here is denied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Capabilities {
    /// Origins `http-fetch` may reach, e.g. `https://api.example.com` or `https://*.example.com`.
    /// Empty means no network at all.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Configuration keys (and secrets) the ForgeHook reads with `config-get`.
    #[serde(default)]
    pub config: Vec<ConfigKey>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigKey {
    pub name: String,
    /// A secret is stored encrypted (or at least never returned by the API).
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Per-call limits the ForgeHook asks for. The host caps each at its own configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: u64,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_memory_mb() -> u64 {
    DEFAULT_MEMORY_MB
}
fn default_max_output_bytes() -> u64 {
    DEFAULT_MAX_OUTPUT_BYTES
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            memory_mb: DEFAULT_MEMORY_MB,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

impl Manifest {
    /// Parses a manifest from JSON; the error names the offending field.
    pub fn from_json(json: &str) -> Result<Manifest, FieldError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "manifest".to_string()
            } else {
                path
            };
            FieldError::new(field, e.into_inner().to_string())
        })
    }

    /// The parsed version; `None` when it is not valid semver (which `validate` reports).
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The tool name an LLM sees for one endpoint of this ForgeHook.
    pub fn tool_name(&self, endpoint: &str) -> String {
        format!("{}{TOOL_NAME_SEPARATOR}{endpoint}", self.id)
    }

    /// Checks every field; returns all problems at once, each under its JSON path.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(msg) = validate_id(&self.id) {
            errors.push(FieldError::new("id", msg));
        }
        if self.name.trim().is_empty() {
            errors.push(FieldError::new("name", "is required and must not be blank"));
        } else if self.name.chars().count() > 255 {
            errors.push(FieldError::new("name", "must be at most 255 characters"));
        }
        if self.semver().is_none() {
            errors.push(FieldError::new(
                "version",
                "must be a semantic version such as 1.0.0",
            ));
        }
        if self.description.chars().count() > 4_000 {
            errors.push(FieldError::new(
                "description",
                "must be at most 4000 characters",
            ));
        }
        if self.category.chars().count() > 64 {
            errors.push(FieldError::new("category", "must be at most 64 characters"));
        }
        if self.tags.len() > 32 {
            errors.push(FieldError::new("tags", "must list at most 32 tags"));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.trim().is_empty() || tag.chars().count() > 64 {
                errors.push(FieldError::new(
                    format!("tags[{i}]"),
                    "must be 1 to 64 characters",
                ));
            }
        }
        if self.author.chars().count() > 255 {
            errors.push(FieldError::new("author", "must be at most 255 characters"));
        }
        self.validate_endpoints(&mut errors);
        self.capabilities.validate(&mut errors);
        errors
    }

    fn validate_endpoints(&self, errors: &mut Vec<FieldError>) {
        if self.endpoints.is_empty() {
            errors.push(FieldError::new(
                "endpoints",
                "must list at least one endpoint",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let at = |f: &str| format!("endpoints[{i}].{f}");
            if let Err(msg) = validate_endpoint_name(&ep.name) {
                errors.push(FieldError::new(at("name"), msg));
            } else if !seen.insert(ep.name.as_str()) {
                errors.push(FieldError::new(
                    at("name"),
                    format!("'{}' is listed twice", ep.name),
                ));
            }
            if ep.description.trim().is_empty() {
                // The LLM picks tools by their descriptions; an empty one is never chosen well.
                errors.push(FieldError::new(
                    at("description"),
                    "is required and must not be blank",
                ));
            } else if ep.description.chars().count() > 4_000 {
                errors.push(FieldError::new(
                    at("description"),
                    "must be at most 4000 characters",
                ));
            }
            match &ep.input_schema {
                Value::Object(obj) if obj.get("type") == Some(&Value::from("object")) => {}
                Value::Object(_) => errors.push(FieldError::new(
                    at("input_schema"),
                    "must be a JSON Schema with \"type\": \"object\" (tool inputs are objects)",
                )),
                _ => errors.push(FieldError::new(
                    at("input_schema"),
                    "must be a JSON Schema object",
                )),
            }
            if !matches!(ep.output_schema, Value::Object(_) | Value::Bool(_)) {
                errors.push(FieldError::new(
                    at("output_schema"),
                    "must be a JSON Schema (an object or a boolean)",
                ));
            }
        }
    }
}

impl Capabilities {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            if let Err(msg) = HostPattern::parse(host) {
                errors.push(FieldError::new(
                    format!("capabilities.allowed_hosts[{i}]"),
                    msg,
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, key) in self.config.iter().enumerate() {
            let field = format!("capabilities.config[{i}].name");
            let valid = !key.name.is_empty()
                && key.name.len() <= 128
                && key.name.starts_with(|c: char| c.is_ascii_alphabetic())
                && key
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                errors.push(FieldError::new(
                    field,
                    "must start with a letter and contain only letters, digits, '_', '-' or '.' (at most 128)",
                ));
            } else if !seen.insert(key.name.as_str()) {
                errors.push(FieldError::new(
                    field,
                    format!("'{}' is listed twice", key.name),
                ));
            }
        }
        let l = &self.limits;
        let mut check = |field: &str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                errors.push(FieldError::new(
                    format!("capabilities.limits.{field}"),
                    format!("must be between {min} and {max}"),
                ));
            }
        };
        check("timeout_ms", l.timeout_ms, 1, 600_000);
        check("memory_mb", l.memory_mb, 1, 16_384);
        check("max_output_bytes", l.max_output_bytes, 1, 1 << 30);
    }
}

/// `data-transform`: lowercase ASCII letters and digits in hyphen-separated words, starting
/// with a letter, so it is safe in URLs, file names and LLM tool names.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is required".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("must be at most {MAX_ID_LEN} characters"));
    }
    if !is_words(id, '-') {
        return Err(
            "must be lowercase letters and digits in words separated by single hyphens, starting with a letter (e.g. data-transform)"
                .into(),
        );
    }
    Ok(())
}

/// `csv_to_json`: like an id but with underscores.
pub fn validate_endpoint_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is required".into());
    }
    if name.len() > MAX_ENDPOINT_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_ENDPOINT_NAME_LEN} characters"
        ));
    }
    if !is_words(name, '_') {
        return Err(
            "must be snake_case: lowercase letters and digits separated by single underscores, starting with a letter (e.g. csv_to_json)"
                .into(),
        );
    }
    Ok(())
}

fn is_words(s: &str, sep: char) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.split(sep).all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// One entry of `allowed_hosts`: `[scheme://]host[:port]` where host may start with `*.` to
/// match any subdomain. Without a scheme only `https` matches, because granting a host
/// should not silently allow plaintext traffic to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pub scheme: String,
    /// Lowercase; `*.example.com` keeps its `*.` prefix.
    pub host: String,
    /// `None` means the scheme's default port.
    pub port: Option<u16>,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let p = pattern.trim();
        let (scheme, rest) = match p.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_string(), p),
        };
        if scheme != "https" && scheme != "http" {
            return Err(format!("'{pattern}': the scheme must be http or https"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "'{pattern}': give an origin such as https://api.example.com, without a path"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, port)) => {
                let port: u16 = port
                    .parse()
                    .map_err(|_| format!("'{pattern}': the port is not a number"))?;
                (h, Some(port))
            }
            None => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if bare.is_empty() || bare.contains('*') || !bare.split('.').all(label_ok) {
            return Err(format!("'{pattern}': '{host}' is not a host name"));
        }
        Ok(HostPattern { scheme, host, port })
    }

    fn default_port(scheme: &str) -> u16 {
        if scheme == "http" {
            80
        } else {
            443
        }
    }

    /// Whether a request to `scheme://host:port` falls under this pattern. `host` must be
    /// lowercase (as URL parsers return it).
    pub fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if scheme != self.scheme {
            return false;
        }
        let want = self
            .port
            .unwrap_or_else(|| Self::default_port(&self.scheme));
        if port.unwrap_or_else(|| Self::default_port(scheme)) != want {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            None => host == self.host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Manifest {
        Manifest::from_json(
            &json!({
                "id": "data-transform",
                "name": "Data transform",
                "version": "1.2.3",
                "endpoints": [{
                    "name": "csv_to_json",
                    "description": "Converts CSV to JSON rows.",
                    "input_schema": {"type": "object"},
                    "output_schema": {"type": "object"}
                }]
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let m = valid();
        assert_eq!(m.runtime, RuntimeKind::Wasm);
        assert_eq!(m.capabilities.limits, Limits::default());
        assert_eq!(m.capabilities.limits.max_output_bytes, 4 * 1024 * 1024);
        assert!(m.validate().is_empty(), "{:?}", m.validate());
        assert_eq!(m.tool_name("csv_to_json"), "data-transform__csv_to_json");
    }

    #[test]
    fn every_bad_field_is_reported_by_path() {
        let mut m = valid();
        m.id = "Data_Transform".into();
        m.version = "1.2".into();
        m.name = " ".into();
        m.endpoints.push(Endpoint {
            name: "csvToJson".into(),
            description: "".into(),
            input_schema: json!({"type": "string"}),
            output_schema: json!(3),
        });
        m.endpoints.push(m.endpoints[0].clone());
        m.capabilities.allowed_hosts = vec!["ftp://x.com".into(), "https://ok.example.com".into()];
        m.capabilities.config = vec![ConfigKey {
            name: "1bad".into(),
            secret: true,
            required: false,
            description: None,
        }];
        m.capabilities.limits.timeout_ms = 0;
        let fields: Vec<String> = m.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "id",
                "name",
                "version",
                "endpoints[1].name",
                "endpoints[1].description",
                "endpoints[1].input_schema",
                "endpoints[1].output_schema",
                "endpoints[2].name",
                "capabilities.allowed_hosts[0]",
                "capabilities.config[0].name",
                "capabilities.limits.timeout_ms",
            ]
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err = Manifest::from_json(
            r#"{"id":"a","name":"b","version":"1.0.0","endpoints":[{"name":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "endpoints[0].name");
        let err = Manifest::from_json(
            r#"{"id":"a","name":"b","version":"1.0.0","runtime":"lambda","endpoints":[]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "runtime");
    }

    #[test]
    fn ids_and_endpoint_names() {
        assert!(validate_id("json-utils2").is_ok());
        for bad in ["", "-a", "a-", "a--b", "A", "2fa", "a_b", &"a".repeat(31)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(validate_endpoint_name("csv_to_json").is_ok());
        for bad in ["CsvToJson", "_a", "a__b", "a-b", "1a"] {
            assert!(validate_endpoint_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns_match_origins_only() {
        let p = HostPattern::parse("https://api.example.com").unwrap();
        assert!(p.matches("https", "api.example.com", None));
        assert!(p.matches("https", "api.example.com", Some(443)));
        assert!(!p.matches("http", "api.example.com", None));
        assert!(!p.matches("https", "evil.com", None));
        assert!(!p.matches("https", "api.example.com", Some(8443)));
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("https", "a.b.example.com", None));
        assert!(!w.matches("https", "example.com", None));
        assert!(!w.matches("https", "badexample.com", None));
        let local = HostPattern::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.matches("http", "127.0.0.1", Some(8080)));
        assert!(!local.matches("http", "127.0.0.1", None));
        for bad in [
            "https://a.com/path",
            "ftp://a.com",
            "https://",
            "*.*.com",
            "a.com:x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
