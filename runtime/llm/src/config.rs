//! Provider configuration: base URLs, credentials, model aliases, retry policy.
//!
//! Built from the environment ([`LlmConfig::from_env`]) or explicitly (tests point every
//! provider at the fake server with [`LlmConfig::for_test_server`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use leforge_core::Provider;
use serde::Deserialize;

/// A credential. Its `Debug` never shows the value, so keys cannot leak through logs or
/// error formatting of structs that hold them.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// Without the `/v1` suffix, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: Secret,
}

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// With the `/v1` suffix, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// `https://<resource>.openai.azure.com`
    pub endpoint: String,
    pub api_key: Secret,
    pub api_version: String,
}

#[derive(Debug, Clone)]
pub struct BedrockConfig {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Overrides `https://bedrock-runtime.{region}.amazonaws.com` (VPC endpoints, tests).
    pub endpoint: Option<String>,
}

impl BedrockConfig {
    pub fn base_url(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://bedrock-runtime.{}.amazonaws.com", self.region),
        }
    }
}

/// A local server needing no key. `explicit` records whether the URL was configured or is
/// the default, which is what "configured" means for these providers.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub base_url: String,
    pub explicit: bool,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts including the first (default 3).
    pub max_attempts: u32,
    /// Backoff before retry n is `base_delay * 2^(n-1)` with jitter; tests set it tiny.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Cap on a provider's `Retry-After`; an exhausted quota can ask for days.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(30),
        }
    }
}

/// Model aliases: per-provider entries win over global ones; an unknown name is passed
/// through unchanged so new model ids work without a release.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelAliases {
    #[serde(default)]
    pub global: BTreeMap<String, String>,
    #[serde(default)]
    pub per_provider: HashMap<Provider, BTreeMap<String, String>>,
}

impl ModelAliases {
    /// The table shipped with the runtime. Kept as data so the TOML config can override
    /// it when providers rename models.
    pub fn defaults() -> Self {
        let mut a = ModelAliases::default();
        for (alias, id) in [
            ("claude-sonnet", "claude-sonnet-4-5"),
            ("claude-opus", "claude-opus-4-5"),
            ("claude-haiku", "claude-haiku-4-5"),
        ] {
            a.set(Some(Provider::Anthropic), alias, id);
        }
        for (alias, id) in [
            ("claude-sonnet", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
            ("claude-opus", "anthropic.claude-opus-4-5-20251101-v1:0"),
            ("claude-haiku", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ] {
            a.set(Some(Provider::Bedrock), alias, id);
        }
        for (alias, id) in [
            ("gpt-4o", "gpt-4o"),
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("gpt-4.1", "gpt-4.1"),
            ("gpt-4.1-mini", "gpt-4.1-mini"),
        ] {
            a.set(Some(Provider::Openai), alias, id);
        }
        a
    }

    /// Adds or replaces an alias; `None` makes it apply to every provider.
    pub fn set(&mut self, provider: Option<Provider>, alias: &str, model: &str) {
        let table = match provider {
            Some(p) => self.per_provider.entry(p).or_default(),
            None => &mut self.global,
        };
        table.insert(alias.to_string(), model.to_string());
    }

    /// Overlays `other` on `self` (config-file entries over defaults).
    pub fn merge(&mut self, other: &ModelAliases) {
        for (k, v) in &other.global {
            self.global.insert(k.clone(), v.clone());
        }
        for (p, table) in &other.per_provider {
            let mine = self.per_provider.entry(*p).or_default();
            for (k, v) in table {
                mine.insert(k.clone(), v.clone());
            }
        }
    }

    pub fn resolve(&self, provider: Provider, model: &str) -> String {
        self.per_provider
            .get(&provider)
            .and_then(|t| t.get(model))
            .or_else(|| self.global.get(model))
            .cloned()
            .unwrap_or_else(|| model.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub anthropic: Option<AnthropicConfig>,
    pub openai: Option<OpenAiConfig>,
    pub azure: Option<AzureConfig>,
    pub bedrock: Option<BedrockConfig>,
    pub ollama: LocalConfig,
    pub lmstudio: LocalConfig,
    pub openai_compatible: Option<OpenAiConfig>,
    pub aliases: ModelAliases,
    /// Default model per provider, shown by `GET /api/v1/llm/providers`.
    pub default_models: HashMap<Provider, String>,
    pub retry: RetryPolicy,
    /// Limit for one attempt: connecting and reading a whole non-streamed answer, or the
    /// gap between two chunks of a stream.
    pub request_timeout: Duration,
}

pub const DEFAULT_ANTHROPIC_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_OPENAI_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_OLLAMA_URL: &str = "http://localhost:11434";
pub const DEFAULT_LMSTUDIO_URL: &str = "http://localhost:1234/v1";
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

fn trim(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

fn default_models() -> HashMap<Provider, String> {
    let mut m = HashMap::new();
    m.insert(Provider::Anthropic, "claude-sonnet".to_string());
    m.insert(Provider::Openai, "gpt-4o".to_string());
    m.insert(Provider::Bedrock, "claude-sonnet".to_string());
    m.insert(Provider::Ollama, "qwen2.5-coder:1.5b".to_string());
    m
}

impl Default for LlmConfig {
    /// Nothing configured: only the local providers (at their default URLs) are usable.
    fn default() -> Self {
        LlmConfig {
            anthropic: None,
            openai: None,
            azure: None,
            bedrock: None,
            ollama: LocalConfig {
                base_url: DEFAULT_OLLAMA_URL.to_string(),
                explicit: false,
            },
            lmstudio: LocalConfig {
                base_url: DEFAULT_LMSTUDIO_URL.to_string(),
                explicit: false,
            },
            openai_compatible: None,
            aliases: ModelAliases::defaults(),
            default_models: default_models(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl LlmConfig {
    /// Reads the documented environment variables.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`LlmConfig::from_env`] with an arbitrary lookup (tests, or a config file
    /// flattened to the same names). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut cfg = LlmConfig::default();
        if let Some(key) = get("ANTHROPIC_API_KEY") {
            cfg.anthropic = Some(AnthropicConfig {
                base_url: trim(
                    &get("ANTHROPIC_BASE_URL").unwrap_or_else(|| DEFAULT_ANTHROPIC_URL.into()),
                ),
                api_key: Secret::new(key),
            });
        }
        if let Some(key) = get("OPENAI_API_KEY") {
            cfg.openai = Some(OpenAiConfig {
                base_url: trim(
                    &get("OPENAI_BASE_URL").unwrap_or_else(|| DEFAULT_OPENAI_URL.into()),
                ),
                api_key: Some(Secret::new(key)),
            });
        }
        if let (Some(endpoint), Some(key)) =
            (get("AZURE_OPENAI_ENDPOINT"), get("AZURE_OPENAI_API_KEY"))
        {
            cfg.azure = Some(AzureConfig {
                endpoint: trim(&endpoint),
                api_key: Secret::new(key),
                api_version: get("AZURE_OPENAI_API_VERSION")
                    .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into()),
            });
        }
        if let (Some(region), Some(akid), Some(secret)) = (
            get("AWS_REGION"),
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY"),
        ) {
            cfg.bedrock = Some(BedrockConfig {
                region,
                access_key_id: akid,
                secret_access_key: Secret::new(secret),
                session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
                endpoint: get("BEDROCK_ENDPOINT").map(|e| trim(&e)),
            });
        }
        if let Some(url) = get("OLLAMA_URL") {
            cfg.ollama = LocalConfig {
                base_url: trim(&url),
                explicit: true,
            };
        }
        if let Some(url) = get("LMSTUDIO_URL") {
            cfg.lmstudio = LocalConfig {
                base_url: trim(&url),
                explicit: true,
            };
        }
        if let Some(url) = get("OPENAI_COMPATIBLE_BASE_URL") {
            cfg.openai_compatible = Some(OpenAiConfig {
                base_url: trim(&url),
                api_key: get("OPENAI_COMPATIBLE_API_KEY").map(Secret::new),
            });
        }
        cfg
    }

    /// Every provider pointed at one server (the fake provider of
    /// `leforge-fake-provider`), with dummy credentials, tiny backoff and a short timeout.
    /// `base_url` is the server root, e.g. `http://127.0.0.1:4321`.
    pub fn for_test_server(base_url: &str) -> Self {
        let base = trim(base_url);
        LlmConfig {
            anthropic: Some(AnthropicConfig {
                base_url: base.clone(),
                api_key: Secret::new("test-anthropic-key"),
            }),
            openai: Some(OpenAiConfig {
                base_url: format!("{base}/v1"),
                api_key: Some(Secret::new("test-openai-key")),
            }),
            azure: Some(AzureConfig {
                endpoint: base.clone(),
                api_key: Secret::new("test-azure-key"),
                api_version: DEFAULT_AZURE_API_VERSION.to_string(),
            }),
            bedrock: Some(BedrockConfig {
                region: "us-east-1".to_string(),
                access_key_id: "AKIDTESTFAKE".to_string(),
                secret_access_key: Secret::new("test-aws-secret"),
                session_token: None,
                endpoint: Some(base.clone()),
            }),
            ollama: LocalConfig {
                base_url: base.clone(),
                explicit: true,
            },
            // Distinct prefixes let the fake tell these key-less servers from OpenAI.
            lmstudio: LocalConfig {
                base_url: format!("{base}/lmstudio/v1"),
                explicit: true,
            },
            openai_compatible: Some(OpenAiConfig {
                base_url: format!("{base}/compat/v1"),
                api_key: None,
            }),
            aliases: ModelAliases::defaults(),
            default_models: default_models(),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                retry_after_cap: Duration::from_secs(30),
            },
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Every key this config holds, so error messages can be scrubbed of them.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        let mut v = Vec::new();
        if let Some(a) = &self.anthropic {
            v.push(a.api_key.expose());
        }
        for o in [&self.openai, &self.openai_compatible]
            .into_iter()
            .flatten()
        {
            if let Some(k) = &o.api_key {
                v.push(k.expose());
            }
        }
        if let Some(a) = &self.azure {
            v.push(a.api_key.expose());
        }
        if let Some(b) = &self.bedrock {
            v.push(b.secret_access_key.expose());
            if let Some(t) = &b.session_token {
                v.push(t.expose());
            }
        }
        v.retain(|s| !s.is_empty());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lookup_builds_providers_and_never_debug_prints_keys() {
        let env: BTreeMap<&str, &str> = [
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("OPENAI_API_KEY", "sk-openai-secret"),
            ("OPENAI_BASE_URL", "http://proxy/v1/"),
            ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
            ("AZURE_OPENAI_API_KEY", "azure-secret"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("OLLAMA_URL", "http://gpu:11434"),
            ("OPENAI_COMPATIBLE_BASE_URL", ""),
        ]
        .into_iter()
        .collect();
        let cfg = LlmConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(cfg.openai.as_ref().unwrap().base_url, "http://proxy/v1");
        assert_eq!(
            cfg.anthropic.as_ref().unwrap().base_url,
            DEFAULT_ANTHROPIC_URL
        );
        assert_eq!(
            cfg.azure.as_ref().unwrap().api_version,
            DEFAULT_AZURE_API_VERSION
        );
        assert_eq!(
            cfg.bedrock.as_ref().unwrap().base_url(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert!(cfg.ollama.explicit);
        assert!(!cfg.lmstudio.explicit);
        assert!(
            cfg.openai_compatible.is_none(),
            "empty value counts as unset"
        );
        let dbg = format!("{cfg:?}");
        for secret in [
            "sk-ant-secret",
            "sk-openai-secret",
            "azure-secret",
            "aws-secret",
        ] {
            assert!(!dbg.contains(secret), "{secret} leaked into Debug");
        }
    }

    #[test]
    fn aliases_resolve_per_provider_then_global_then_pass_through() {
        let mut a = ModelAliases::defaults();
        assert_eq!(
            a.resolve(Provider::Anthropic, "claude-sonnet"),
            "claude-sonnet-4-5"
        );
        assert!(a
            .resolve(Provider::Bedrock, "claude-sonnet")
            .starts_with("anthropic."));
        assert_eq!(a.resolve(Provider::Openai, "my-model"), "my-model");
        let mut overrides = ModelAliases::default();
        overrides.set(
            Some(Provider::Anthropic),
            "claude-sonnet",
            "claude-sonnet-9",
        );
        overrides.set(None, "fast", "llama3.2");
        a.merge(&overrides);
        assert_eq!(
            a.resolve(Provider::Anthropic, "claude-sonnet"),
            "claude-sonnet-9"
        );
        assert_eq!(a.resolve(Provider::Ollama, "fast"), "llama3.2");
    }
}
