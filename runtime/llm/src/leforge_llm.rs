//! LLM provider adapters behind the core [`LlmClient`] trait.
//!
//! [`LlmRouter`] is the one `LlmClient` the server uses: it resolves model aliases,
//! sanitizes tool names per request, dispatches on `request.provider` to the adapter that
//! speaks that provider's wire format, and retries transient failures. The agent loop only
//! ever sees canonical tool names and normalized responses.

mod anthropic;
mod bedrock;
pub mod config;
mod constrain;
mod convo;
pub mod names;
mod ollama;
mod openai;
pub mod recover;
pub mod retry;

use std::time::Duration;

use futures::{Stream, StreamExt};
use leforge_core::{
    ChatRequest, ChatResponse, LlmClient, LlmError, ModelInfo, Provider, ProviderInfo,
};
use tokio::sync::mpsc::UnboundedSender;

pub use config::{
    AnthropicConfig, AzureConfig, BedrockConfig, LlmConfig, LocalConfig, ModelAliases,
    OpenAiConfig, RetryPolicy, Secret,
};
pub use leforge_core::llm::MAX_TOOLS;

pub(crate) type Deltas = Option<UnboundedSender<String>>;

/// Forwards a text delta; a receiver that went away (client disconnected) is not an error
/// for the model call itself.
pub(crate) fn emit(deltas: &Deltas, text: &str) {
    if let Some(tx) = deltas {
        let _ = tx.send(text.to_string());
    }
}

/// The next stream item, or `Err(())` when none arrives within `timeout` (a provider that
/// stalls mid-stream must not hang the run).
pub(crate) async fn next_or_timeout<S: Stream + Unpin>(
    s: &mut S,
    timeout: Duration,
) -> Result<Option<S::Item>, ()> {
    tokio::time::timeout(timeout, s.next())
        .await
        .map_err(|_| ())
}

/// A URL path segment (model id, deployment name): everything but unreserved characters
/// escaped, so ids like `anthropic.claude-…-v1:0` keep their dots and dashes.
pub(crate) const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Ids for providers that give none (Ollama) or calls recovered from text.
pub(crate) fn new_call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

pub(crate) struct Ctx<'a> {
    pub http: &'a reqwest::Client,
    pub config: &'a LlmConfig,
}

impl Ctx<'_> {
    pub fn sender(&self, provider: Provider) -> retry::Sender<'_> {
        retry::Sender {
            provider,
            policy: &self.config.retry,
            timeout: self.config.request_timeout,
            secrets: self.config.secrets(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

/// Routes each request to its provider's adapter.
#[derive(Clone)]
pub struct LlmRouter {
    config: std::sync::Arc<LlmConfig>,
    http: reqwest::Client,
    /// The structured-output variant each provider last accepted.
    constraints: std::sync::Arc<constrain::Memory>,
}

impl std::fmt::Debug for LlmRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmRouter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlmRouter {
    pub fn new(config: LlmConfig) -> Result<Self, InitError> {
        // No client-wide timeout: each attempt gets `request_timeout`, and streams are
        // bounded per chunk, so long generations are not cut while they make progress.
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .build()
            .map_err(|e| InitError::Http(e.to_string()))?;
        Ok(LlmRouter {
            config: std::sync::Arc::new(config),
            http,
            constraints: Default::default(),
        })
    }

    pub fn from_env() -> Result<Self, InitError> {
        Self::new(LlmConfig::from_env())
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            http: &self.http,
            config: &self.config,
        }
    }

    /// The serialized body this router would send for `request` (after alias resolution
    /// and name sanitizing). For debugging and golden tests; sends nothing.
    pub fn request_body(&self, request: &ChatRequest) -> Result<serde_json::Value, LlmError> {
        let mut p = convo::Prepared::new(request, &self.config.aliases)?;
        p.constraint =
            constrain::variants(request.provider)[self.constraints.current(request.provider)];
        let value = match request.provider {
            Provider::Anthropic => anthropic::body(&mut p)?.to_value(),
            Provider::Bedrock => Ok(bedrock::body(&mut p)?),
            Provider::Ollama => ollama::body(&mut p).to_value(),
            Provider::Openai => openai::body(&mut p, openai::Flavor::OpenAi).to_value(),
            Provider::Azure => openai::body(&mut p, openai::Flavor::Azure).to_value(),
            Provider::Lmstudio => openai::body(&mut p, openai::Flavor::LmStudio).to_value(),
            Provider::OpenaiCompatible => {
                openai::body(&mut p, openai::Flavor::Compatible).to_value()
            }
        };
        value.map_err(|e| LlmError::MalformedResponse {
            provider: request.provider,
            reason: format!("could not encode request: {e}"),
        })
    }

    /// What `GET /api/v1/llm/providers` shows. Never includes a key.
    pub fn provider_infos(&self) -> Vec<ProviderInfo> {
        let c = &self.config;
        Provider::ALL
            .into_iter()
            .map(|p| {
                let (configured, base_url) = match p {
                    Provider::Anthropic => (
                        c.anthropic.is_some(),
                        Some(
                            c.anthropic
                                .as_ref()
                                .map(|a| a.base_url.clone())
                                .unwrap_or_else(|| config::DEFAULT_ANTHROPIC_URL.into()),
                        ),
                    ),
                    Provider::Openai => (
                        c.openai.is_some(),
                        Some(
                            c.openai
                                .as_ref()
                                .map(|a| a.base_url.clone())
                                .unwrap_or_else(|| config::DEFAULT_OPENAI_URL.into()),
                        ),
                    ),
                    Provider::Azure => (
                        c.azure.is_some(),
                        c.azure.as_ref().map(|a| a.endpoint.clone()),
                    ),
                    Provider::Bedrock => (
                        c.bedrock.is_some(),
                        c.bedrock.as_ref().map(|b| b.base_url()),
                    ),
                    Provider::Ollama => (c.ollama.explicit, Some(c.ollama.base_url.clone())),
                    Provider::Lmstudio => (c.lmstudio.explicit, Some(c.lmstudio.base_url.clone())),
                    Provider::OpenaiCompatible => (
                        c.openai_compatible.is_some(),
                        c.openai_compatible.as_ref().map(|o| o.base_url.clone()),
                    ),
                };
                ProviderInfo {
                    name: p,
                    configured,
                    base_url,
                    default_model: c.default_models.get(&p).cloned(),
                }
            })
            .collect()
    }

    /// The provider's model list: OpenAI-style `GET /models` (OpenAI, LM Studio,
    /// OpenAI-compatible, Anthropic's `/v1/models`) or Ollama's `GET /api/tags`. Azure
    /// (deployments) and Bedrock (a different service) have none here.
    pub async fn list_models(&self, provider: Provider) -> Result<Vec<ModelInfo>, LlmError> {
        let c = &self.config;
        let not_configured = |what: &str| LlmError::NotConfigured {
            provider,
            reason: format!("set {what}"),
        };
        let mut headers: Vec<(&str, String)> = Vec::new();
        let url = match provider {
            Provider::Anthropic => {
                let a = c
                    .anthropic
                    .as_ref()
                    .ok_or_else(|| not_configured("ANTHROPIC_API_KEY"))?;
                headers.push(("x-api-key", a.api_key.expose().to_string()));
                headers.push(("anthropic-version", anthropic::ANTHROPIC_VERSION.into()));
                format!("{}/v1/models", a.base_url)
            }
            Provider::Openai | Provider::OpenaiCompatible => {
                let o = if provider == Provider::Openai {
                    c.openai
                        .as_ref()
                        .ok_or_else(|| not_configured("OPENAI_API_KEY"))?
                } else {
                    c.openai_compatible
                        .as_ref()
                        .ok_or_else(|| not_configured("OPENAI_COMPATIBLE_BASE_URL"))?
                };
                if let Some(k) = &o.api_key {
                    headers.push(("authorization", format!("Bearer {}", k.expose())));
                }
                format!("{}/models", o.base_url)
            }
            Provider::Lmstudio => format!("{}/models", c.lmstudio.base_url),
            Provider::Ollama => format!("{}/api/tags", c.ollama.base_url),
            Provider::Azure | Provider::Bedrock => {
                return Err(LlmError::Unsupported {
                    provider,
                    what: "listing models".into(),
                })
            }
        };
        let ctx = self.ctx();
        let reply = ctx
            .sender(provider)
            .send(
                || {
                    let mut rb = self.http.get(&url);
                    for (k, v) in &headers {
                        rb = rb.header(*k, v.as_str());
                    }
                    Ok(rb)
                },
                retry::Read::Full,
            )
            .await?;
        let retry::Reply::Full(body) = reply else {
            return Err(LlmError::MalformedResponse {
                provider,
                reason: "unexpected streamed reply".into(),
            });
        };
        let ids = match provider {
            Provider::Ollama => ollama::parse_models(&body)?,
            Provider::Anthropic => anthropic::parse_models(&body)?,
            _ => openai::parse_models(provider, &body)?,
        };
        Ok(ids.into_iter().map(|id| ModelInfo { id }).collect())
    }
}

#[async_trait::async_trait]
impl LlmClient for LlmRouter {
    async fn chat(
        &self,
        request: ChatRequest,
        deltas: Option<UnboundedSender<String>>,
    ) -> Result<ChatResponse, LlmError> {
        let started = std::time::Instant::now();
        let (provider, model) = (request.provider, request.model.clone());
        let answer = self.chat_constrained(request, deltas).await;
        observe(provider, model, &answer, started.elapsed());
        answer
    }
}

/// One model request (retries and a structured-output fallback included) in the operator's
/// metrics. `model` is the agent's (an alias or an id): a bounded set, unlike what a
/// provider may answer with.
fn observe(
    provider: Provider,
    model: String,
    answer: &Result<ChatResponse, LlmError>,
    took: Duration,
) {
    let provider = provider.as_str();
    let outcome = match answer {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics::counter!("leforge_llm_requests_total",
        "provider" => provider, "model" => model.clone(), "outcome" => outcome)
    .increment(1);
    metrics::histogram!("leforge_llm_request_duration_seconds", "provider" => provider)
        .record(took.as_secs_f64());
    if let Ok(response) = answer {
        metrics::counter!("leforge_llm_tokens_total",
            "provider" => provider, "model" => model.clone(), "direction" => "input")
        .increment(response.usage.input_tokens);
        metrics::counter!("leforge_llm_tokens_total",
            "provider" => provider, "model" => model, "direction" => "output")
        .increment(response.usage.output_tokens);
    }
}

impl LlmRouter {
    async fn chat_constrained(
        &self,
        request: ChatRequest,
        deltas: Option<UnboundedSender<String>>,
    ) -> Result<ChatResponse, LlmError> {
        let mut p = convo::Prepared::new(&request, &self.config.aliases)?;
        if request.response_schema.is_none() {
            return self.dispatch(&mut p, deltas).await;
        }
        let provider = request.provider;
        let variants = constrain::variants(provider);
        let start = self.constraints.current(provider);
        p.constraint = variants[start];
        match self.dispatch(&mut p, deltas.clone()).await {
            // A provider that refuses this way of asking for JSON may take the next one: one
            // more attempt, and the variant that worked is used from then on.
            Err(e) if constrain::is_refusal(&e) && start + 1 < variants.len() => {
                tracing::warn!(
                    provider = %provider,
                    refused = ?variants[start],
                    next = ?variants[start + 1],
                    error = %e,
                    "provider refused the structured-output variant; trying the next"
                );
                p.constraint = variants[start + 1];
                let answer = self.dispatch(&mut p, deltas).await;
                if answer.is_ok() {
                    self.constraints.remember(provider, start + 1);
                }
                answer
            }
            answer => answer,
        }
    }
}

impl LlmRouter {
    async fn dispatch(
        &self,
        p: &mut convo::Prepared<'_>,
        deltas: Option<UnboundedSender<String>>,
    ) -> Result<ChatResponse, LlmError> {
        let request = p.req;
        let ctx = self.ctx();
        let deltas = if request.stream { deltas } else { None };
        match request.provider {
            Provider::Anthropic => anthropic::chat(&ctx, p, deltas).await,
            Provider::Bedrock => bedrock::chat(&ctx, p, deltas).await,
            Provider::Ollama => ollama::chat(&ctx, p, deltas).await,
            Provider::Openai => openai::chat(&ctx, openai::Flavor::OpenAi, p, deltas).await,
            Provider::Azure => openai::chat(&ctx, openai::Flavor::Azure, p, deltas).await,
            Provider::Lmstudio => openai::chat(&ctx, openai::Flavor::LmStudio, p, deltas).await,
            Provider::OpenaiCompatible => {
                openai::chat(&ctx, openai::Flavor::Compatible, p, deltas).await
            }
        }
    }
}
