//! Gateway ForgeHooks: HTTP services that already run elsewhere. Nothing to start or stop;
//! only the call (headers, time limit, retries on connection failures, size cap).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use leforge_core::forgehook::{Manifest, RuntimeKind};
use leforge_core::tool::{ToolError, ToolExecutor, ToolOutput};
use leforge_core::FieldError;
use serde_json::Value;

use crate::errors::ContainerError;
use crate::http_call::{self, Call, CallFailure, Validators};

/// Runs gateway ForgeHooks. Cheap to clone; clones share the loaded ForgeHooks.
#[derive(Clone)]
pub struct GatewayRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    max_response_bytes: u64,
    /// Cap on any call's time, whatever the manifest asks.
    max_timeout_ms: u64,
    hooks: RwLock<HashMap<String, Arc<GatewayHook>>>,
}

struct GatewayHook {
    manifest: Manifest,
    /// With `${KEY}` already replaced from the configuration.
    headers: Vec<(String, String)>,
    validators: Validators,
}

impl GatewayRuntime {
    /// `max_response_bytes` caps every response and `max_timeout_ms` every call's time,
    /// whatever the manifest asks for.
    pub fn new(
        max_response_bytes: u64,
        max_timeout_ms: u64,
    ) -> Result<GatewayRuntime, ContainerError> {
        Ok(GatewayRuntime {
            inner: Arc::new(Inner {
                client: http_call::client().map_err(ContainerError::Docker)?,
                max_response_bytes,
                max_timeout_ms,
                hooks: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Makes a gateway ForgeHook callable (install, enable, or load at start-up); replaces
    /// the loaded version of the same id. Does not contact the service: a gateway that is
    /// down at install time may well be up when called.
    pub fn install(
        &self,
        manifest: Manifest,
        config: &HashMap<String, String>,
    ) -> Result<(), ContainerError> {
        let mut errors = manifest.validate();
        if manifest.runtime != RuntimeKind::Gateway {
            errors.push(FieldError::new(
                "runtime",
                format!("must be gateway, not {}", manifest.runtime),
            ));
        }
        if !errors.is_empty() {
            return Err(ContainerError::InvalidManifest(errors));
        }
        let validators =
            http_call::compile_validators(&manifest).map_err(ContainerError::InvalidManifest)?;
        let headers = resolve_headers(&manifest, config)?;
        let hook = GatewayHook {
            manifest,
            headers,
            validators,
        };
        let id = hook.manifest.id.clone();
        self.write().insert(id, Arc::new(hook));
        Ok(())
    }

    /// Re-resolves the headers after a configuration change.
    pub fn set_config(
        &self,
        id: &str,
        config: &HashMap<String, String>,
    ) -> Result<(), ContainerError> {
        let manifest = self
            .read()
            .get(id)
            .map(|h| h.manifest.clone())
            .ok_or_else(|| ContainerError::NotFound(id.into()))?;
        self.install(manifest, config)
    }

    /// Forgets a ForgeHook (uninstall or disable); whether it was loaded.
    pub fn uninstall(&self, id: &str) -> bool {
        self.write().remove(id).is_some()
    }

    pub fn is_loaded(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<GatewayHook>>> {
        // A panic while holding the lock cannot leave the map half-updated (inserts and
        // removes are single operations), so a poisoned lock is still usable.
        self.inner.hooks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<GatewayHook>>> {
        self.inner.hooks.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// `${KEY}` in a header value is replaced by the configuration value `KEY`.
fn resolve_headers(
    manifest: &Manifest,
    config: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, ContainerError> {
    let Some(gw) = &manifest.gateway else {
        return Ok(Vec::new());
    };
    let mut errors = Vec::new();
    let mut headers = Vec::new();
    for (name, template) in &gw.headers {
        match substitute(template, config) {
            Ok(v) => headers.push((name.clone(), v)),
            Err(key) => errors.push(FieldError::new(
                format!("gateway.headers.{name}"),
                format!("uses ${{{key}}}, which is not configured"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(headers)
    } else {
        Err(ContainerError::InvalidConfig(errors))
    }
}

fn substitute(template: &str, config: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // Not a placeholder: keep the text as written.
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = &after[..end];
        out.push_str(config.get(key).ok_or_else(|| key.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[async_trait]
impl ToolExecutor for GatewayRuntime {
    async fn invoke(
        &self,
        forgehook_id: &str,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        let started = Instant::now();
        let hook = self.read().get(forgehook_id).cloned().ok_or_else(|| {
            ToolError::not_found(format!("ForgeHook '{forgehook_id}' is not loaded"))
        })?;
        let ep = hook.manifest.endpoint(endpoint).ok_or_else(|| {
            ToolError::not_found(format!(
                "ForgeHook '{forgehook_id}' has no endpoint '{endpoint}'"
            ))
        })?;
        if let Some(v) = hook.validators.get(endpoint) {
            http_call::check_input(v, &input)?;
        }
        let Some(gw) = &hook.manifest.gateway else {
            return Err(ToolError::Internal {
                message: format!("ForgeHook '{forgehook_id}' has no gateway section"),
            });
        };
        let method = ep.http_method();
        let result = http_call::call(
            &self.inner.client,
            Call {
                method: &method,
                url: http_call::join_url(&gw.base_url, "", ep.path.as_deref().unwrap_or("/")),
                headers: &hook.headers,
                input: &input,
                timeout: Duration::from_millis(gw.timeout_ms.min(self.inner.max_timeout_ms)),
                max_bytes: hook
                    .manifest
                    .capabilities
                    .limits
                    .max_output_bytes
                    .min(self.inner.max_response_bytes),
                retries: gw.retries,
            },
        )
        .await;
        let output = result.map_err(|f| match f {
            CallFailure::Connect(m) => ToolError::Unavailable {
                message: format!("the gateway of '{forgehook_id}' does not answer: {m}"),
            },
            CallFailure::Broken(m) => ToolError::Unavailable {
                message: format!("the connection to the gateway of '{forgehook_id}' broke: {m}"),
            },
            CallFailure::Tool(e) => e,
        })?;
        Ok(ToolOutput {
            output,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_come_from_the_configuration() {
        let config: HashMap<String, String> = [("TOKEN".to_string(), "s3cret".to_string())].into();
        assert_eq!(
            substitute("Bearer ${TOKEN}", &config).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(substitute("plain", &config).unwrap(), "plain");
        assert_eq!(substitute("odd ${", &config).unwrap(), "odd ${");
        assert_eq!(substitute("${MISSING}", &config).unwrap_err(), "MISSING");
    }
}
