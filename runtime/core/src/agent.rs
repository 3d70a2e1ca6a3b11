//! Agents: what a user defines (prompt, provider, model, tools, limits) and the rules that
//! keep a definition valid no matter which door (HTTP API, admin UI, CLI) it came through.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::validation::FieldError;

/// The longest a run may take (`config.timeout_ms`): one hour.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The LLM providers the runtime can speak to. The wire names are the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Anthropic,
    Openai,
    Azure,
    Bedrock,
    Ollama,
    Lmstudio,
    OpenaiCompatible,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::Anthropic,
        Provider::Openai,
        Provider::Azure,
        Provider::Bedrock,
        Provider::Ollama,
        Provider::Lmstudio,
        Provider::OpenaiCompatible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Openai => "openai",
            Provider::Azure => "azure",
            Provider::Bedrock => "bedrock",
            Provider::Ollama => "ollama",
            Provider::Lmstudio => "lmstudio",
            Provider::OpenaiCompatible => "openai-compatible",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the model is asked to call tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolMode {
    /// The provider's own tool calling (`tools` in the request).
    Native,
    /// No `tools` array: the tools are described in a preamble and every reply is constrained
    /// to one JSON action object. Small local models follow this far more reliably than
    /// their chat template's function calling.
    Json,
    /// `native` for hosted providers, `json` for local ones.
    #[default]
    Auto,
}

impl ToolMode {
    /// The mode a run actually uses: `auto` resolved by provider. Hosted providers are trained
    /// for their own tool calling; the local servers' function-calling templates let small
    /// models write prose instead, while their structured-output support is solid.
    pub fn resolve(self, provider: Provider) -> ToolMode {
        match self {
            ToolMode::Auto => match provider {
                Provider::Anthropic | Provider::Openai | Provider::Azure | Provider::Bedrock => {
                    ToolMode::Native
                }
                Provider::Ollama | Provider::Lmstudio | Provider::OpenaiCompatible => {
                    ToolMode::Json
                }
            },
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ToolMode::Native => "native",
            ToolMode::Json => "json",
            ToolMode::Auto => "auto",
        }
    }
}

/// Tool results (and data fields) larger than this many bytes of JSON reach the model as a
/// preview with a reference, unless the agent sets `result_budget_bytes`.
pub const DEFAULT_RESULT_BUDGET_BYTES: u32 = 4096;

/// Execution limits of an agent. Defaults follow LeForge upstream so that agents moved
/// over from it behave the same.
// `default` so that rows stored before a field existed still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AgentConfig {
    /// Maximum number of tool calls in one run (1–100).
    pub max_steps: u32,
    /// Maximum tokens per LLM call (1–200000).
    pub max_tokens: u32,
    /// Sampling temperature (0–2).
    pub temperature: f64,
    /// Wall-clock limit for a whole run in milliseconds (1000–3600000).
    pub timeout_ms: u64,
    /// Retry transient tool failures.
    pub retry_on_error: bool,
    /// How many times a transient tool failure is retried (0–10).
    pub max_retries: u32,
    /// Optional budget of input plus output tokens over a whole run (1–100000000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u64>,
    /// `native`, `json` or `auto` (native for hosted providers, json for local ones).
    pub tool_mode: ToolMode,
    /// Tool results and data fields larger than this (bytes of JSON) are shown to the model
    /// as a preview with a `$ref` to use instead (256–1000000).
    pub result_budget_bytes: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            max_steps: 10,
            max_tokens: 4096,
            temperature: 0.7,
            timeout_ms: 60_000,
            retry_on_error: true,
            max_retries: 2,
            max_total_tokens: None,
            tool_mode: ToolMode::Auto,
            result_budget_bytes: DEFAULT_RESULT_BUDGET_BYTES,
        }
    }
}

/// A partial config as clients send it: absent fields keep their current (or default) value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfigPatch {
    pub max_steps: Option<u32>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub timeout_ms: Option<u64>,
    pub retry_on_error: Option<bool>,
    pub max_retries: Option<u32>,
    pub max_total_tokens: Option<u64>,
    pub tool_mode: Option<ToolMode>,
    pub result_budget_bytes: Option<u32>,
}

impl AgentConfig {
    /// Returns this config with every field the patch sets replaced.
    pub fn merged(&self, patch: &AgentConfigPatch) -> AgentConfig {
        AgentConfig {
            max_steps: patch.max_steps.unwrap_or(self.max_steps),
            max_tokens: patch.max_tokens.unwrap_or(self.max_tokens),
            temperature: patch.temperature.unwrap_or(self.temperature),
            timeout_ms: patch.timeout_ms.unwrap_or(self.timeout_ms),
            retry_on_error: patch.retry_on_error.unwrap_or(self.retry_on_error),
            max_retries: patch.max_retries.unwrap_or(self.max_retries),
            max_total_tokens: patch.max_total_tokens.or(self.max_total_tokens),
            tool_mode: patch.tool_mode.unwrap_or(self.tool_mode),
            result_budget_bytes: patch
                .result_budget_bytes
                .unwrap_or(self.result_budget_bytes),
        }
    }

    /// The limits a patch would raise above this config's own, each as
    /// `config_override.<field>`. Callers that are not admins may only lower limits: a
    /// public agent's caller must not buy itself more steps, time, tokens or retries than the
    /// agent's owner granted.
    pub fn raised_by(&self, patch: &AgentConfigPatch) -> Vec<FieldError> {
        let mut raised = Vec::new();
        let mut check = |field: &str, asked: Option<u64>, own: Option<u64>| {
            let Some(asked) = asked else { return };
            let over = match own {
                Some(own) => asked > own,
                // No budget of its own is "unlimited": any budget lowers it.
                None => false,
            };
            if over {
                let own = own.unwrap_or_default();
                raised.push(FieldError::new(
                    format!("config_override.{field}"),
                    format!("may not be above the agent's own {own} (only an admin key may raise a limit)"),
                ));
            }
        };
        check(
            "max_steps",
            patch.max_steps.map(u64::from),
            Some(self.max_steps.into()),
        );
        check(
            "max_tokens",
            patch.max_tokens.map(u64::from),
            Some(self.max_tokens.into()),
        );
        check("timeout_ms", patch.timeout_ms, Some(self.timeout_ms));
        check(
            "max_retries",
            patch.max_retries.map(u64::from),
            Some(self.max_retries.into()),
        );
        check(
            "max_total_tokens",
            patch.max_total_tokens,
            self.max_total_tokens,
        );
        check(
            "result_budget_bytes",
            patch.result_budget_bytes.map(u64::from),
            Some(self.result_budget_bytes.into()),
        );
        if patch.retry_on_error == Some(true) && !self.retry_on_error {
            raised.push(FieldError::new(
                "config_override.retry_on_error",
                "may not turn retries on when the agent has them off (only an admin key may)",
            ));
        }
        raised
    }

    /// Checks every bound and reports each violation under `config.<field>`.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        fn check<T: PartialOrd + std::fmt::Display>(
            errors: &mut Vec<FieldError>,
            field: &str,
            value: T,
            min: T,
            max: T,
        ) {
            if value < min || value > max {
                errors.push(FieldError::new(
                    format!("config.{field}"),
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        check(errors, "max_steps", self.max_steps, 1, 100);
        check(errors, "max_tokens", self.max_tokens, 1, 200_000);
        if !self.temperature.is_finite() {
            errors.push(FieldError::new("config.temperature", "must be a number"));
        } else {
            check(errors, "temperature", self.temperature, 0.0, 2.0);
        }
        check(errors, "timeout_ms", self.timeout_ms, 1_000, MAX_TIMEOUT_MS);
        check(errors, "max_retries", self.max_retries, 0, 10);
        if let Some(budget) = self.max_total_tokens {
            check(errors, "max_total_tokens", budget, 1, 100_000_000);
        }
        check(
            errors,
            "result_budget_bytes",
            self.result_budget_bytes,
            256,
            1_000_000,
        );
    }
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub model: String,
    pub provider: Provider,
    pub system_prompt: String,
    /// ForgeHook ids this agent may use as tools.
    pub tools: Vec<String>,
    pub config: AgentConfig,
    /// Readable (and, unless `api_key_required`, runnable) without an API key.
    pub is_public: bool,
    /// When true a key is needed to run the agent even if it is public.
    pub api_key_required: bool,
    /// Ids of the invoke keys that may run this agent; empty means any invoke key.
    pub allowed_api_keys: Vec<Uuid>,
    /// JSON Schema the final output must match (one repair turn, then the run fails).
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<serde_json::Value>,
    /// Ids of the hook scripts applied to this agent's runs, in order (after the global ones).
    #[serde(default)]
    pub hooks: Vec<Uuid>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const DEFAULT_PROVIDER: Provider = Provider::Anthropic;
/// An alias, resolved to a concrete model id by the providers' configuration, so stored
/// agents do not pin a model id that goes stale.
pub const DEFAULT_MODEL: &str = "claude-sonnet";

/// Everything needed to insert an agent; produced by validating a create request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgent {
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub model: String,
    pub provider: Provider,
    pub system_prompt: String,
    pub tools: Vec<String>,
    pub config: AgentConfig,
    pub is_public: bool,
    pub api_key_required: bool,
    pub allowed_api_keys: Vec<Uuid>,
    pub output_schema: Option<serde_json::Value>,
    /// Hook script ids, in order.
    pub hooks: Vec<Uuid>,
    pub created_by: Option<String>,
}

/// A validated partial update. `None` leaves a field unchanged; `description: Some(None)`
/// clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<Option<String>>,
    pub model: Option<String>,
    pub provider: Option<Provider>,
    pub system_prompt: Option<String>,
    pub tools: Option<Vec<String>>,
    pub config: Option<AgentConfig>,
    pub is_public: Option<bool>,
    pub api_key_required: Option<bool>,
    pub allowed_api_keys: Option<Vec<Uuid>>,
    pub output_schema: Option<Option<serde_json::Value>>,
    pub hooks: Option<Vec<Uuid>>,
}

impl AgentPatch {
    pub fn apply(&self, agent: &mut Agent) {
        if let Some(v) = &self.name {
            agent.name = v.clone();
        }
        if let Some(v) = &self.slug {
            agent.slug = v.clone();
        }
        if let Some(v) = &self.description {
            agent.description = v.clone();
        }
        if let Some(v) = &self.model {
            agent.model = v.clone();
        }
        if let Some(v) = self.provider {
            agent.provider = v;
        }
        if let Some(v) = &self.system_prompt {
            agent.system_prompt = v.clone();
        }
        if let Some(v) = &self.tools {
            agent.tools = v.clone();
        }
        if let Some(v) = &self.config {
            agent.config = v.clone();
        }
        if let Some(v) = self.is_public {
            agent.is_public = v;
        }
        if let Some(v) = self.api_key_required {
            agent.api_key_required = v;
        }
        if let Some(v) = &self.allowed_api_keys {
            agent.allowed_api_keys = v.clone();
        }
        if let Some(v) = &self.output_schema {
            agent.output_schema = v.clone();
        }
        if let Some(v) = &self.hooks {
            agent.hooks = v.clone();
        }
    }
}

/// Derives the URL slug from a name: lowercase ASCII letters and digits, every other run of
/// characters collapsed into one hyphen, no leading or trailing hyphen. Returns an empty
/// string when the name has no ASCII letter or digit; callers decide the fallback.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut pending_hyphen = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_hyphen && !slug.is_empty() {
                slug.push('-');
            }
            pending_hyphen = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_hyphen = true;
        }
    }
    slug
}

/// Checks the fields shared by create and update; `None` means "not being set".
pub fn validate_name(name: &str, errors: &mut Vec<FieldError>) {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    if len == 0 {
        errors.push(FieldError::new("name", "is required and must not be blank"));
    } else if len > 255 {
        errors.push(FieldError::new("name", "must be at most 255 characters"));
    }
}

pub fn validate_system_prompt(prompt: &str, errors: &mut Vec<FieldError>) {
    if prompt.trim().is_empty() {
        errors.push(FieldError::new(
            "system_prompt",
            "is required and must not be blank",
        ));
    }
}

pub fn validate_model(model: &str, errors: &mut Vec<FieldError>) {
    if model.trim().is_empty() {
        errors.push(FieldError::new("model", "must not be blank"));
    } else if model.len() > 255 {
        errors.push(FieldError::new("model", "must be at most 255 characters"));
    }
}

pub fn validate_tools(tools: &[String], errors: &mut Vec<FieldError>) {
    let mut seen = std::collections::HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool.trim().is_empty() {
            errors.push(FieldError::new(format!("tools[{i}]"), "must not be blank"));
        } else if !seen.insert(tool.as_str()) {
            errors.push(FieldError::new(
                format!("tools[{i}]"),
                format!("'{tool}' is listed twice"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_collapses_and_trims() {
        assert_eq!(slugify("  CSV Cleaner -- v2!  "), "csv-cleaner-v2");
        assert_eq!(slugify("Data_Transformer"), "data-transformer");
        assert_eq!(slugify("日本語"), "");
    }

    #[test]
    fn config_bounds_report_each_field() {
        let cfg = AgentConfig {
            max_steps: 0,
            max_tokens: 300_000,
            temperature: 2.5,
            timeout_ms: 10,
            retry_on_error: true,
            max_retries: 11,
            max_total_tokens: None,
            tool_mode: ToolMode::Json,
            result_budget_bytes: 10,
        };
        let mut errors = Vec::new();
        cfg.validate(&mut errors);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "config.max_steps",
                "config.max_tokens",
                "config.temperature",
                "config.timeout_ms",
                "config.max_retries",
                "config.result_budget_bytes"
            ]
        );
        let mut ok = Vec::new();
        AgentConfig::default().validate(&mut ok);
        assert!(ok.is_empty());
    }

    #[test]
    fn auto_tool_mode_is_json_only_for_local_providers() {
        let json: Vec<_> = Provider::ALL
            .into_iter()
            .filter(|p| ToolMode::Auto.resolve(*p) == ToolMode::Json)
            .collect();
        assert_eq!(
            json,
            [
                Provider::Ollama,
                Provider::Lmstudio,
                Provider::OpenaiCompatible
            ]
        );
        assert_eq!(ToolMode::Native.resolve(Provider::Ollama), ToolMode::Native);
        assert_eq!(ToolMode::Json.resolve(Provider::Anthropic), ToolMode::Json);
        // Stored configs from before the field existed load as `auto`.
        let old: AgentConfig = serde_json::from_value(serde_json::json!({"max_steps": 3})).unwrap();
        assert_eq!(old.tool_mode, ToolMode::Auto);
        assert_eq!(old.result_budget_bytes, DEFAULT_RESULT_BUDGET_BYTES);
    }

    #[test]
    fn merge_keeps_unset_fields() {
        let merged = AgentConfig::default().merged(&AgentConfigPatch {
            max_steps: Some(3),
            ..Default::default()
        });
        assert_eq!(merged.max_steps, 3);
        assert_eq!(merged.max_tokens, 4096);
    }
}
