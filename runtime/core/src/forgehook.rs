//! The ForgeHook manifest (`forgehook.json`, also what a component's `describe` returns) and
//! the rules that keep one valid, whichever runtime (WASM, container or gateway) executes the
//! ForgeHook.
//!
//! It is a superset of LeForge upstream's public manifest, so upstream manifests keep their
//! meaning; unknown fields are ignored rather than rejected for the same reason. Upstream's
//! container and gateway manifests have no endpoint names or schemas: [`Manifest::from_json`]
//! derives the names from the paths and gives such endpoints a permissive schema, flagged with
//! [`Endpoint::schema_missing`] so the API can say the LLM is flying blind.

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
/// Upstream's gateway default; a remote service is slower than a local component.
pub const DEFAULT_GATEWAY_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_GATEWAY_RETRIES: u32 = 2;
pub const DEFAULT_HEALTH_PATH: &str = "/health";
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 500;
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;
/// With the default interval this gives a container about 30 s to become healthy.
pub const DEFAULT_HEALTH_RETRIES: u32 = 60;
pub const HTTP_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// What executes a ForgeHook. `non_exhaustive` so a future runtime does not break matches in
/// other crates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuntimeKind {
    /// A WebAssembly component run by the in-process host.
    #[default]
    Wasm,
    /// An HTTP service in a Docker container that the server starts and stops.
    Container,
    /// An HTTP service that already runs elsewhere; the server only calls it.
    Gateway,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Wasm => "wasm",
            RuntimeKind::Container => "container",
            RuntimeKind::Gateway => "gateway",
        }
    }

    /// Whether endpoints are reached over HTTP (and so need a `path`).
    pub fn is_http(self) -> bool {
        matches!(self, RuntimeKind::Container | RuntimeKind::Gateway)
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
    /// Container only: the image to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Container only: the TCP port the service listens on inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Upstream's fixed host port. Accepted so upstream manifests parse, but never used: the
    /// server reaches containers on their own network (or an ephemeral loopback port), so two
    /// ForgeHooks can never fight over a host port.
    #[serde(
        default,
        rename = "hostPort",
        alias = "host_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_port: Option<u16>,
    /// Container only: prefix of every endpoint path, e.g. `/api` (upstream's agent dropped it).
    #[serde(
        default,
        rename = "basePath",
        alias = "base_path",
        skip_serializing_if = "String::is_empty"
    )]
    pub base_path: String,
    /// Container only: what must answer 2xx before the first call. Without it the server waits
    /// until the port accepts connections.
    #[serde(
        default,
        rename = "healthCheck",
        alias = "health_check",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_check: Option<HealthCheck>,
    /// Container only: what the container may use; the server caps each at its own maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Container only: environment variables. Values of secret or unset ones come from the
    /// per-install configuration under the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<EnvVar>,
    /// Container only: when the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Gateway only: where the already-running service is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
}

/// A container image reference, split as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRef {
    /// e.g. `leforge/container-example` or `ghcr.io/org/ocr`.
    pub repository: String,
    #[serde(default = "default_tag")]
    pub tag: String,
    /// `sha256:<64 hex>`; when given, the image is pulled and run by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

fn default_tag() -> String {
    "latest".into()
}

impl ImageRef {
    /// The reference Docker understands: `repo@digest` when pinned, else `repo:tag`.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.repository),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }
}

/// An HTTP check of the container's readiness. `path` is from the container's root (not under
/// `basePath`), because health routes usually sit outside the API prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Pause between attempts. Upstream's `interval` (a number of ms or `"30s"`) is accepted.
    #[serde(
        default = "default_health_interval_ms",
        alias = "interval",
        deserialize_with = "de_duration_ms"
    )]
    pub interval_ms: u64,
    /// Time limit of one attempt. Upstream's `timeout` is accepted.
    #[serde(
        default = "default_health_timeout_ms",
        alias = "timeout",
        deserialize_with = "de_duration_ms"
    )]
    pub timeout_ms: u64,
    /// Failed attempts tolerated before the start counts as failed.
    #[serde(default = "default_health_retries")]
    pub retries: u32,
}

fn default_health_path() -> String {
    DEFAULT_HEALTH_PATH.into()
}
fn default_health_interval_ms() -> u64 {
    DEFAULT_HEALTH_INTERVAL_MS
}
fn default_health_timeout_ms() -> u64 {
    DEFAULT_HEALTH_TIMEOUT_MS
}
fn default_health_retries() -> u32 {
    DEFAULT_HEALTH_RETRIES
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: default_health_path(),
            interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            retries: DEFAULT_HEALTH_RETRIES,
        }
    }
}

/// Requested container resources; an unset one gets the server's maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    /// Upstream's `memory` (`"512m"`, `"1Gi"`, or a number of MB) is accepted.
    #[serde(
        default,
        alias = "memory",
        deserialize_with = "de_memory_mb",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_mb: Option<u64>,
    /// CPUs, fractions allowed. Upstream's `cpu` (number or numeric string) is accepted.
    #[serde(
        default,
        alias = "cpu",
        deserialize_with = "de_cpus",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpus: Option<f64>,
    /// Maximum number of processes/threads in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// One environment variable of the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvVar {
    pub name: String,
    /// The value, unless configured per install. Upstream's `default` is accepted.
    #[serde(default, alias = "default", skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Supplied per install and never returned by the API; a manifest cannot carry its value.
    #[serde(default)]
    pub secret: bool,
    /// The container cannot start without it.
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartPolicy {
    /// Started when installed (and at server start), so the first call is fast.
    #[default]
    OnInstall,
    /// Started by the first call, which waits for it to become healthy.
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Lifecycle {
    #[serde(default)]
    pub start: StartPolicy,
    /// Stop the container after this many seconds without calls; unset or 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop_after_s: Option<u64>,
}

/// An already-running HTTP service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatewayConfig {
    /// `http(s)://host[:port][/prefix]`; endpoint paths are appended to it.
    #[serde(rename = "baseUrl", alias = "base_url")]
    pub base_url: String,
    /// Sent with every call. `${KEY}` in a value is replaced by the per-install configuration
    /// value `KEY`, so credentials stay out of the manifest.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Upstream's `timeout` is accepted.
    #[serde(
        default = "default_gateway_timeout_ms",
        alias = "timeout",
        deserialize_with = "de_duration_ms"
    )]
    pub timeout_ms: u64,
    /// Extra attempts after a connection failure (never after the service answered).
    #[serde(default = "default_gateway_retries")]
    pub retries: u32,
}

fn default_gateway_timeout_ms() -> u64 {
    DEFAULT_GATEWAY_TIMEOUT_MS
}
fn default_gateway_retries() -> u32 {
    DEFAULT_GATEWAY_RETRIES
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
    /// Container and gateway: the HTTP method (default `POST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Container and gateway: the path under `basePath` (or the gateway's `baseUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The manifest gave no schema (an upstream manifest), so a permissive one stands in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schema_missing: bool,
}

impl Endpoint {
    /// The HTTP method to call, uppercase.
    pub fn http_method(&self) -> String {
        self.method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|| "POST".into())
    }
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
    /// Parses a manifest from JSON, ours or LeForge upstream's (see [`normalize_upstream`]);
    /// the error names the offending field.
    pub fn from_json(json: &str) -> Result<Manifest, FieldError> {
        let mut value: Value = serde_json::from_str(json)
            .map_err(|e| FieldError::new("manifest", format!("is not valid JSON: {e}")))?;
        normalize_upstream(&mut value);
        Self::from_value(value)
    }

    /// Deserializes an already normalized manifest; the error names the offending field.
    pub fn from_value(value: Value) -> Result<Manifest, FieldError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "manifest".to_string()
            } else {
                path
            };
            FieldError::new(field, e.into_inner().to_string())
        })
    }

    /// How the container runs; the defaults when the manifest says nothing.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.unwrap_or_default()
    }

    /// Every key the per-install configuration may hold: `capabilities.config` plus, for a
    /// container, its environment variables (secret ones stay secret).
    pub fn config_keys(&self) -> Vec<ConfigKey> {
        let mut keys = self.capabilities.config.clone();
        for env in &self.environment {
            if keys.iter().all(|k| k.name != env.name) {
                keys.push(ConfigKey {
                    name: env.name.clone(),
                    secret: env.secret,
                    required: env.required && env.value.is_none(),
                    description: env.description.clone(),
                });
            }
        }
        keys
    }

    /// The parsed version; `None` when it is not valid semver (which `validate` reports).
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The tool name an LLM sees for one endpoint of this ForgeHook. An MCP server's tools
    /// (id `mcp:<server>`) are `<server>__<tool>`: the issue's contract, and a name every
    /// provider accepts.
    pub fn tool_name(&self, endpoint: &str) -> String {
        let prefix = self
            .id
            .strip_prefix(crate::mcp::TOOL_PREFIX)
            .unwrap_or(&self.id);
        format!("{prefix}{TOOL_NAME_SEPARATOR}{endpoint}")
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
        match self.runtime {
            RuntimeKind::Wasm => {}
            RuntimeKind::Container => self.validate_container(&mut errors),
            RuntimeKind::Gateway => self.validate_gateway(&mut errors),
        }
        self.reject_foreign_fields(&mut errors);
        errors
    }

    /// Fields of another runtime are an error rather than ignored: a manifest that says
    /// `wasm` but carries an `image` is almost certainly missing `"runtime": "container"`.
    fn reject_foreign_fields(&self, errors: &mut Vec<FieldError>) {
        let container = self.runtime == RuntimeKind::Container;
        let present = [
            ("image", self.image.is_some(), container),
            ("port", self.port.is_some(), container),
            ("basePath", !self.base_path.is_empty(), container),
            ("healthCheck", self.health_check.is_some(), container),
            ("resources", self.resources.is_some(), container),
            ("environment", !self.environment.is_empty(), container),
            ("lifecycle", self.lifecycle.is_some(), container),
            (
                "gateway",
                self.gateway.is_some(),
                self.runtime == RuntimeKind::Gateway,
            ),
        ];
        for (field, is_set, allowed) in present {
            if is_set && !allowed {
                errors.push(FieldError::new(
                    field,
                    format!("is not used by runtime {}", self.runtime),
                ));
            }
        }
        if !self.runtime.is_http() {
            for (i, ep) in self.endpoints.iter().enumerate() {
                if ep.method.is_some() || ep.path.is_some() {
                    errors.push(FieldError::new(
                        format!("endpoints[{i}]"),
                        format!(
                            "method and path are only for container and gateway runtimes, not {}",
                            self.runtime
                        ),
                    ));
                }
            }
        }
    }

    fn validate_http_endpoints(&self, errors: &mut Vec<FieldError>) {
        for (i, ep) in self.endpoints.iter().enumerate() {
            match ep.path.as_deref() {
                None => errors.push(FieldError::new(
                    format!("endpoints[{i}].path"),
                    format!("is required for runtime {}", self.runtime),
                )),
                Some(p) => {
                    if let Err(msg) = validate_url_path(p, false) {
                        errors.push(FieldError::new(format!("endpoints[{i}].path"), msg));
                    }
                }
            }
            if let Some(m) = &ep.method {
                if !HTTP_METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                    errors.push(FieldError::new(
                        format!("endpoints[{i}].method"),
                        format!("must be one of {}", HTTP_METHODS.join(", ")),
                    ));
                }
            }
        }
    }

    fn validate_container(&self, errors: &mut Vec<FieldError>) {
        self.validate_http_endpoints(errors);
        match &self.image {
            None => errors.push(FieldError::new(
                "image",
                "is required for runtime container",
            )),
            Some(img) => {
                let repo_ok = !img.repository.is_empty()
                    && img.repository.len() <= 255
                    && img
                        .repository
                        .starts_with(|c: char| c.is_ascii_alphanumeric())
                    && img.repository.chars().all(|c| {
                        c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || matches!(c, '.' | '_' | '-' | '/' | ':')
                    });
                if !repo_ok {
                    errors.push(FieldError::new(
                        "image.repository",
                        "must be an image name such as leforge/ocr or ghcr.io/org/ocr (lowercase)",
                    ));
                }
                let tag_ok = !img.tag.is_empty()
                    && img.tag.len() <= 128
                    && img
                        .tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !tag_ok {
                    errors.push(FieldError::new(
                        "image.tag",
                        "must be 1 to 128 letters, digits, '.', '_' or '-'",
                    ));
                }
                if let Some(d) = &img.digest {
                    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
                        h.len() == 64
                            && h.chars()
                                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                    });
                    if !ok {
                        errors.push(FieldError::new(
                            "image.digest",
                            "must be sha256: followed by 64 lowercase hex digits",
                        ));
                    }
                }
            }
        }
        match self.port {
            None => errors.push(FieldError::new("port", "is required for runtime container")),
            Some(0) => errors.push(FieldError::new("port", "must be between 1 and 65535")),
            Some(_) => {}
        }
        if !self.base_path.is_empty() {
            if let Err(msg) = validate_url_path(&self.base_path, true) {
                errors.push(FieldError::new("basePath", msg));
            }
        }
        if let Some(hc) = &self.health_check {
            if let Err(msg) = validate_url_path(&hc.path, false) {
                errors.push(FieldError::new("healthCheck.path", msg));
            }
            if !(10..=600_000).contains(&hc.interval_ms) {
                errors.push(FieldError::new(
                    "healthCheck.interval_ms",
                    "must be between 10 and 600000",
                ));
            }
            if !(1..=600_000).contains(&hc.timeout_ms) {
                errors.push(FieldError::new(
                    "healthCheck.timeout_ms",
                    "must be between 1 and 600000",
                ));
            }
            if hc.retries > 10_000 {
                errors.push(FieldError::new(
                    "healthCheck.retries",
                    "must be at most 10000",
                ));
            }
        }
        if let Some(r) = &self.resources {
            if r.memory_mb.is_some_and(|m| !(6..=1 << 20).contains(&m)) {
                // Docker refuses less than 6 MB.
                errors.push(FieldError::new(
                    "resources.memory_mb",
                    "must be between 6 and 1048576",
                ));
            }
            if r.cpus
                .is_some_and(|c| !(c.is_finite() && (0.01..=1024.0).contains(&c)))
            {
                errors.push(FieldError::new(
                    "resources.cpus",
                    "must be between 0.01 and 1024",
                ));
            }
            if r.pids.is_some_and(|p| !(1..=1 << 22).contains(&p)) {
                errors.push(FieldError::new(
                    "resources.pids",
                    "must be between 1 and 4194304",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, env) in self.environment.iter().enumerate() {
            let valid = env
                .name
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && env.name.len() <= 128
                && env
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                errors.push(FieldError::new(
                    format!("environment[{i}].name"),
                    "must be letters, digits and '_', not starting with a digit (at most 128)",
                ));
            } else if !seen.insert(env.name.as_str()) {
                errors.push(FieldError::new(
                    format!("environment[{i}].name"),
                    format!("'{}' is listed twice", env.name),
                ));
            }
            if env.secret && env.value.is_some() {
                errors.push(FieldError::new(
                    format!("environment[{i}].value"),
                    "a secret's value belongs in the per-install configuration, not the manifest",
                ));
            }
        }
        if let Some(s) = self.lifecycle.and_then(|l| l.idle_stop_after_s) {
            if s > 30 * 24 * 3600 {
                errors.push(FieldError::new(
                    "lifecycle.idle_stop_after_s",
                    "must be at most 2592000 (30 days)",
                ));
            }
        }
    }

    fn validate_gateway(&self, errors: &mut Vec<FieldError>) {
        self.validate_http_endpoints(errors);
        let Some(gw) = &self.gateway else {
            errors.push(FieldError::new(
                "gateway",
                "is required for runtime gateway",
            ));
            return;
        };
        let url_ok = gw.base_url.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https")
                && !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(['?', '#', ' '])
        });
        if !url_ok {
            errors.push(FieldError::new(
                "gateway.baseUrl",
                "must be an http(s) URL such as https://ocr.internal:8080/api, without query",
            ));
        }
        for name in gw.headers.keys() {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !ok {
                errors.push(FieldError::new(
                    format!("gateway.headers.{name}"),
                    "is not a valid header name",
                ));
            }
        }
        if !(1..=600_000).contains(&gw.timeout_ms) {
            errors.push(FieldError::new(
                "gateway.timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        if gw.retries > 10 {
            errors.push(FieldError::new("gateway.retries", "must be at most 10"));
        }
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

/// `/v1/text/stats`: absolute, without query, fragment, `..` or whitespace. A base path
/// (`base`) must not end with `/`, because endpoint paths start with one.
fn validate_url_path(path: &str, base: bool) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if path.len() > 1024 {
        return Err("must be at most 1024 characters".into());
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a plain path, without query, fragment or spaces".into());
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err("must not contain '..'".into());
    }
    if base && path.ends_with('/') {
        return Err("must not end with '/' (endpoint paths start with one)".into());
    }
    Ok(())
}

/// Brings a LeForge upstream container or gateway manifest to our shape, in place; our own
/// manifests pass through unchanged. Called by [`Manifest::from_json`]; exposed for callers
/// that hold a parsed `Value`.
///
/// - No `runtime`: upstream's default is `container`, ours `wasm`; a manifest with `image`
///   (or `gateway`) is taken to be a container (or gateway), so both defaults keep working.
/// - For container and gateway endpoints only (WASM endpoints stay strict): a missing `name`
///   is derived from the path ([`endpoint_name_from_path`], made unique in manifest order),
///   a missing `description` becomes `METHOD path`, and a missing schema becomes a
///   permissive object schema with `schema_missing: true`.
pub fn normalize_upstream(manifest: &mut Value) {
    let Some(obj) = manifest.as_object_mut() else {
        return;
    };
    if !obj.contains_key("runtime") {
        if obj.contains_key("gateway") {
            obj.insert("runtime".into(), Value::from("gateway"));
        } else if obj.contains_key("image") {
            obj.insert("runtime".into(), Value::from("container"));
        }
    }
    let http = matches!(
        obj.get("runtime").and_then(Value::as_str),
        Some("container" | "gateway")
    );
    if !http {
        return;
    }
    let Some(Value::Array(endpoints)) = obj.get_mut("endpoints") else {
        return;
    };
    let mut taken: std::collections::HashSet<String> = endpoints
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    for ep in endpoints.iter_mut() {
        let Some(ep) = ep.as_object_mut() else {
            continue;
        };
        let path = ep.get("path").and_then(Value::as_str).map(str::to_string);
        let method = ep
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase);
        if let Some(m) = &method {
            ep.insert("method".into(), Value::from(m.clone()));
        }
        if let (false, Some(path)) = (ep.contains_key("name"), &path) {
            let name = unique_endpoint_name(path, method.as_deref(), &mut taken);
            ep.insert("name".into(), Value::from(name));
        }
        if !ep.contains_key("description") {
            if let Some(path) = &path {
                let m = method.as_deref().unwrap_or("POST");
                ep.insert("description".into(), Value::from(format!("{m} {path}")));
            }
        }
        let mut missing = false;
        if !ep.contains_key("input_schema") {
            missing = true;
            ep.insert(
                "input_schema".into(),
                serde_json::json!({"type": "object", "additionalProperties": true}),
            );
        }
        if !ep.contains_key("output_schema") {
            missing = true;
            ep.insert("output_schema".into(), serde_json::json!({}));
        }
        if missing {
            ep.insert("schema_missing".into(), Value::Bool(true));
        }
    }
}

/// A snake_case endpoint name for an HTTP path: `/v1/text/stats` → `text_stats`,
/// `/base64/encode` → `base64_encode`, `/pdf/toText` → `pdf_to_text`. Version segments
/// (`v1`) and path parameters (`{id}`, `:id`) are dropped; the result fits
/// [`MAX_ENDPOINT_NAME_LEN`] and is a valid name (`root` when nothing is left).
pub fn endpoint_name_from_path(path: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for seg in path.split('/') {
        let is_version = seg.len() >= 2
            && seg.starts_with(['v', 'V'])
            && seg[1..].chars().all(|c| c.is_ascii_digit());
        if seg.is_empty() || is_version || seg.starts_with([':', '{']) {
            continue;
        }
        // Split camelCase and any non-alphanumeric run into words.
        let mut word = String::new();
        let mut prev_lower = false;
        for c in seg.chars() {
            if c.is_ascii_alphanumeric() {
                if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
                word.push(c.to_ascii_lowercase());
            } else {
                prev_lower = false;
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    let mut name = words.join("_");
    if name.is_empty() {
        name = "root".into();
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("op_{name}");
    }
    truncate_name(&name, MAX_ENDPOINT_NAME_LEN)
}

/// Cuts at a word boundary-safe point: never leaves a trailing `_`.
fn truncate_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    name[..max].trim_end_matches('_').to_string()
}

/// The derived name, or on a collision `<method>_<name>`, then `<name>_2`, `_3`, ...
fn unique_endpoint_name(
    path: &str,
    method: Option<&str>,
    taken: &mut std::collections::HashSet<String>,
) -> String {
    let base = endpoint_name_from_path(path);
    let mut candidates = vec![base.clone()];
    if let Some(m) = method {
        candidates.push(truncate_name(
            &format!("{}_{base}", m.to_ascii_lowercase()),
            MAX_ENDPOINT_NAME_LEN,
        ));
    }
    for candidate in candidates {
        if taken.insert(candidate.clone()) {
            return candidate;
        }
    }
    let mut n = 2u32;
    loop {
        let suffix = format!("_{n}");
        let head = truncate_name(&base, MAX_ENDPOINT_NAME_LEN - suffix.len());
        let candidate = format!("{head}{suffix}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// A duration in ms: a number (ms) or a string with a unit (`"500ms"`, `"30s"`, `"1m"`, `"1h"`;
/// a bare numeric string is ms), as upstream manifests write them.
fn de_duration_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom("must be a non-negative whole number of ms")),
        Value::String(s) => parse_duration_ms(&s).ok_or_else(|| {
            D::Error::custom(format!(
                "'{s}' is not a duration (a number of ms, or e.g. 500ms, 30s, 1m)"
            ))
        }),
        _ => Err(D::Error::custom(
            "must be a number of ms or a string such as 30s",
        )),
    }
}

fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = num * factor;
    (ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64).then(|| ms.round() as u64)
}

/// Memory in MB: a number (MB) or a Docker-style size string (`"512m"`, `"1g"`, `"256Mi"`,
/// `"1Gi"`, `"1048576k"`, or bytes with `b`).
fn de_memory_mb<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom("must be a whole number of MB")),
        Some(Value::String(s)) => parse_memory_mb(&s).map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "'{s}' is not a memory size (a number of MB, or e.g. 512m, 1g, 256Mi)"
            ))
        }),
        Some(_) => Err(D::Error::custom(
            "must be a number of MB or a string such as 512m",
        )),
    }
}

fn parse_memory_mb(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mb = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mi" | "mib" => num,
        "g" | "gb" | "gi" | "gib" => num * 1024.0,
        "k" | "kb" | "ki" | "kib" => num / 1024.0,
        "b" => num / (1024.0 * 1024.0),
        _ => return None,
    };
    (mb.is_finite() && (0.0..1e15).contains(&mb)).then(|| mb.ceil() as u64)
}

/// CPUs: a number or a numeric string (`"0.5"`); Kubernetes-style millicores (`"500m"`) too.
fn de_cpus<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    use serde::de::Error;
    let bad = || D::Error::custom("must be a number of CPUs such as 0.5");
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => {
            let s = s.trim();
            let v = match s.strip_suffix('m') {
                Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
                None => s.parse::<f64>().ok(),
            };
            v.map(Some).ok_or_else(bad)
        }
        Some(_) => Err(bad()),
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

pub(crate) fn is_words(s: &str, sep: char) -> bool {
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
            method: None,
            path: None,
            schema_missing: false,
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

    fn container() -> Manifest {
        Manifest::from_json(
            &json!({
                "id": "container-example",
                "name": "Container example",
                "version": "0.1.0",
                "runtime": "container",
                "image": {"repository": "leforge/container-example", "tag": "0.1.0"},
                "port": 8080,
                "basePath": "/api",
                "healthCheck": {"path": "/health", "interval_ms": 200, "timeout_ms": 1000, "retries": 50},
                "resources": {"memory_mb": 64, "cpus": 0.5, "pids": 32},
                "environment": [{"name": "GREETING", "value": "hi"}, {"name": "API_KEY", "secret": true, "required": true}],
                "lifecycle": {"start": "on_demand", "idle_stop_after_s": 60},
                "endpoints": [{
                    "name": "text_stats",
                    "description": "Counts characters, words and lines.",
                    "method": "POST",
                    "path": "/v1/text/stats",
                    "input_schema": {"type": "object"},
                    "output_schema": {"type": "object"}
                }]
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn container_manifest_round_trips_and_validates() {
        let m = container();
        assert!(m.validate().is_empty(), "{:?}", m.validate());
        assert_eq!(m.runtime, RuntimeKind::Container);
        assert_eq!(m.base_path, "/api");
        assert_eq!(m.lifecycle().start, StartPolicy::OnDemand);
        assert_eq!(
            m.image.as_ref().unwrap().reference(),
            "leforge/container-example:0.1.0"
        );
        assert_eq!(m.endpoints[0].http_method(), "POST");
        assert!(!m.endpoints[0].schema_missing);
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"basePath\":\"/api\""), "{text}");
        assert!(!text.contains("schema_missing"), "{text}");
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        let keys = m.config_keys();
        let api_key = keys.iter().find(|k| k.name == "API_KEY").unwrap();
        assert!(api_key.secret && api_key.required);
        assert!(!keys.iter().find(|k| k.name == "GREETING").unwrap().required);
    }

    #[test]
    fn container_and_gateway_fields_are_checked_per_runtime() {
        let mut m = container();
        m.image = None;
        m.port = Some(0);
        m.base_path = "/api/".into();
        m.health_check = Some(HealthCheck {
            path: "health".into(),
            ..HealthCheck::default()
        });
        m.resources = Some(Resources {
            memory_mb: Some(1),
            cpus: Some(0.0),
            pids: Some(0),
        });
        m.environment[1].value = Some("leaked".into());
        m.endpoints[0].path = None;
        m.endpoints[0].method = Some("FETCH".into());
        m.gateway = Some(GatewayConfig {
            base_url: "http://x".into(),
            headers: Default::default(),
            timeout_ms: 1,
            retries: 0,
        });
        let fields: Vec<String> = m.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "endpoints[0].path",
                "endpoints[0].method",
                "image",
                "port",
                "basePath",
                "healthCheck.path",
                "resources.memory_mb",
                "resources.cpus",
                "resources.pids",
                "environment[1].value",
                "gateway",
            ]
        );

        // A WASM manifest must not carry container fields or HTTP routes.
        let mut w = valid();
        w.image = container().image;
        w.endpoints[0].path = Some("/x".into());
        let fields: Vec<String> = w.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["image", "endpoints[0]"]);

        let gw = Manifest::from_json(
            &json!({
                "id": "ocr", "name": "OCR", "version": "1.0.0", "runtime": "gateway",
                "gateway": {"baseUrl": "ftp://ocr", "timeout_ms": 0, "headers": {"bad header": "x"}},
                "endpoints": [{"name": "read", "description": "d", "path": "/read",
                               "input_schema": {"type": "object"}, "output_schema": {}}]
            })
            .to_string(),
        )
        .unwrap();
        let fields: Vec<String> = gw.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "gateway.baseUrl",
                "gateway.headers.bad header",
                "gateway.timeout_ms"
            ]
        );
    }

    #[test]
    fn upstream_container_manifest_is_accepted() {
        // Upstream's shape: no runtime (container is its default), hostPort, unit strings,
        // `default` for env values, endpoints with method/path but neither names nor schemas.
        let m = Manifest::from_json(
            &json!({
                "id": "pdf-service",
                "name": "PDF service",
                "version": "1.0.0",
                "description": "PDF tools",
                "image": {"repository": "leforge/pdf-service", "tag": "1.0.0"},
                "port": 3000,
                "hostPort": 4010,
                "basePath": "/api",
                "healthCheck": {"path": "/health", "interval": "30s", "timeout": 5000, "retries": 3},
                "resources": {"memory": "512m", "cpu": "0.5", "gpu": false},
                "environment": [{"name": "LOG_LEVEL", "default": "info", "description": "verbosity"}],
                "volumes": [],
                "endpoints": [
                    {"method": "post", "path": "/v1/text/stats", "description": "Stats"},
                    {"method": "GET", "path": "/v1/text/stats", "description": "Stats, by query"},
                    {"method": "POST", "path": "/base64/encode", "description": "Encode"},
                    {"method": "POST", "path": "/pdf/toText", "description": "Extract text"},
                    {"path": "/items/{id}"},
                    {"name": "explicit", "description": "Named", "path": "/named",
                     "input_schema": {"type": "object"}, "output_schema": {}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        assert!(m.validate().is_empty(), "{:?}", m.validate());
        assert_eq!(m.runtime, RuntimeKind::Container);
        assert_eq!(m.host_port, Some(4010));
        let hc = m.health_check.clone().unwrap();
        assert_eq!(
            (hc.interval_ms, hc.timeout_ms, hc.retries),
            (30_000, 5_000, 3)
        );
        let r = m.resources.unwrap();
        assert_eq!((r.memory_mb, r.cpus, r.pids), (Some(512), Some(0.5), None));
        assert_eq!(m.environment[0].value.as_deref(), Some("info"));
        let names: Vec<&str> = m.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "text_stats",
                "get_text_stats",
                "base64_encode",
                "pdf_to_text",
                "items",
                "explicit"
            ]
        );
        assert_eq!(m.endpoints[0].method.as_deref(), Some("POST"));
        assert_eq!(m.endpoints[4].description, "POST /items/{id}");
        assert!(m.endpoints[..5].iter().all(|e| e.schema_missing));
        assert!(!m.endpoints[5].schema_missing);
        assert_eq!(m.endpoints[0].input_schema["type"], "object");
        // Stored and read back with plain serde, the flag and names survive.
        let back: Manifest = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn upstream_gateway_manifest_is_accepted() {
        let m = Manifest::from_json(
            &json!({
                "id": "llm-gateway", "name": "LLM gateway", "version": "2.0.0",
                "gateway": {"baseUrl": "http://127.0.0.1:9000/v2", "timeout": "45s",
                            "retries": 1, "headers": {"X-Token": "${TOKEN}"}, "stripPrefix": true},
                "endpoints": [{"method": "POST", "path": "/chat", "description": "Chat"}]
            })
            .to_string(),
        )
        .unwrap();
        assert!(m.validate().is_empty(), "{:?}", m.validate());
        assert_eq!(m.runtime, RuntimeKind::Gateway);
        let gw = m.gateway.unwrap();
        assert_eq!((gw.timeout_ms, gw.retries), (45_000, 1));
        assert_eq!(m.endpoints[0].name, "chat");
    }

    #[test]
    fn wasm_endpoints_stay_strict() {
        // Without a container/gateway runtime nothing is filled in: a WASM endpoint must
        // name itself and carry schemas.
        let err = Manifest::from_json(
            r#"{"id":"a","name":"b","version":"1.0.0","endpoints":[{"path":"/x","description":"d"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "endpoints[0]");
        assert!(err.message.contains("name"), "{}", err.message);
        let err = Manifest::from_json("{not json").unwrap_err();
        assert_eq!(err.field, "manifest");
    }

    #[test]
    fn endpoint_names_from_paths() {
        for (path, name) in [
            ("/v1/text/stats", "text_stats"),
            ("/base64/encode", "base64_encode"),
            ("/pdf/toText", "pdf_to_text"),
            ("/api/v2/OCR/read-image", "api_ocr_read_image"),
            ("/users/{id}/posts/:post", "users_posts"),
            ("/", "root"),
            ("/v1", "root"),
            ("/2fa/verify", "op_2fa_verify"),
            ("/a__b//c", "a_b_c"),
        ] {
            assert_eq!(endpoint_name_from_path(path), name, "{path}");
            assert!(validate_endpoint_name(name).is_ok(), "{name}");
        }
        let long = endpoint_name_from_path(&"/abcdefghij".repeat(5));
        assert!(long.len() <= MAX_ENDPOINT_NAME_LEN && validate_endpoint_name(&long).is_ok());
        let mut taken = std::collections::HashSet::new();
        let names: Vec<String> = ["/x", "/x", "/x", "/v1/x"]
            .iter()
            .map(|p| unique_endpoint_name(p, Some("POST"), &mut taken))
            .collect();
        assert_eq!(names, ["x", "post_x", "x_2", "x_3"]);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("1.5m"), Some(90_000));
        assert_eq!(parse_duration_ms("soon"), None);
        assert_eq!(parse_memory_mb("1g"), Some(1024));
        assert_eq!(parse_memory_mb("256Mi"), Some(256));
        assert_eq!(parse_memory_mb("1048576k"), Some(1024));
        assert_eq!(parse_memory_mb("lots"), None);
    }
}
