//! wasmtime component host for WASM ForgeHooks: limits, epochs, pooling, precompile cache.
//!
//! One [`WasmHost`] per process holds one `Engine` and one `Linker` (WASI p2 with no ambient
//! authority, plus the `leforge:forgehook/host` interface) and a concurrent map of loaded
//! ForgeHooks, so installing and removing take effect without a restart.
//!
//! ```ignore
//! let host = WasmHost::new(WasmHostConfig::new("/var/lib/leforge/wasm-cache"))?;
//! // Install: validate, describe, precompile, cache.
//! let prepared = host.prepare(&wasm_bytes, None).await?;
//! let (manifest, sha256) = (prepared.manifest.clone(), prepared.sha256.clone());
//! host.load_prepared(prepared, HashMap::new());
//! // At start-up, from the database row: no recompilation.
//! host.load(manifest, &sha256, HashMap::new())?;
//! let out = host.invoke("echo", "echo", json!({"message": "hi"})).await?;
//! ```

mod bindings;
mod cache;
mod call;
mod engine;
mod error;
mod host_impl;
mod limits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use leforge_core::forgehook::{HostPattern, Manifest, RuntimeKind};
use leforge_core::tool::{ToolError, ToolExecutor, ToolOutput};
use leforge_core::FieldError;
use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Engine;

use crate::bindings::{Forgehook, ForgehookPre};
use crate::cache::ArtifactCache;
use crate::call::{Call, CallEnv, Returned};
use crate::engine::EpochTicker;
use crate::host_impl::{Grants, HostState, HttpPolicy};

pub use crate::cache::sha256_hex;
pub use crate::engine::EPOCH_TICK;
pub use crate::error::{HostError, InstallError};
pub use crate::limits::CallLimits;

/// The host's own limits and policies; manifests ask, these cap.
#[derive(Debug, Clone)]
pub struct WasmHostConfig {
    /// Where original and precompiled components are kept (see the `cache` module).
    pub cache_dir: PathBuf,
    pub max_timeout_ms: u64,
    pub max_memory_mb: u64,
    pub max_output_bytes: u64,
    /// Calls (and `describe`s) that may run at once; the instance pool is sized for it.
    /// Calls beyond it fail with `UNAVAILABLE`.
    pub max_concurrent_calls: u32,
    /// `None`: a ForgeHook may reach every origin its manifest was granted at install.
    /// `Some(list)`: it must additionally match one of these patterns (same syntax as
    /// `allowed_hosts`), so an operator can fence all ForgeHooks in.
    pub allowed_hosts: Option<Vec<String>>,
    /// Hosts that `http-fetch` may reach although they are, or resolve to, loopback,
    /// private, link-local or other internal addresses. Every other host is resolved and
    /// refused when it lands on such an address: a granted name must not reach the host's
    /// own services or the cloud metadata address.
    pub private_hosts: Vec<String>,
    pub max_http_response_bytes: usize,
    /// Largest `.wasm` accepted at install.
    pub max_component_bytes: usize,
    /// Bytes of stdout and of stderr kept per call for the log.
    pub stdio_capture_bytes: usize,
    /// The key that authenticates precompiled artifacts; `None`: `<cache_dir>.key`. Keep it
    /// outside the cache directory.
    pub cache_key_path: Option<PathBuf>,
}

impl WasmHostConfig {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        WasmHostConfig {
            cache_dir: cache_dir.into(),
            max_timeout_ms: 30_000,
            max_memory_mb: 256,
            max_output_bytes: 16 << 20,
            max_concurrent_calls: 32,
            allowed_hosts: None,
            private_hosts: Vec::new(),
            max_http_response_bytes: 8 << 20,
            max_component_bytes: 64 << 20,
            stdio_capture_bytes: 16 << 10,
            cache_key_path: None,
        }
    }
}

/// A validated, compiled and cached component, ready for [`WasmHost::load_prepared`].
pub struct Prepared {
    /// The manifest in force: the override if one was given, else what `describe` returned.
    pub manifest: Manifest,
    /// Lowercase hex SHA-256 of the `.wasm`; the key to [`WasmHost::load`] it again.
    pub sha256: String,
    pub size_bytes: usize,
    pre: ForgehookPre<HostState>,
    validators: Arc<HashMap<String, jsonschema::Validator>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// A loaded ForgeHook: everything a call needs, immutable, swapped whole on change.
struct Loaded {
    manifest: Arc<Manifest>,
    sha256: String,
    pre: ForgehookPre<HostState>,
    validators: Arc<HashMap<String, jsonschema::Validator>>,
    limits: CallLimits,
    grants: Arc<Grants>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    config: WasmHostConfig,
    cache: ArtifactCache,
    http: Arc<HttpPolicy>,
    hooks: RwLock<HashMap<String, Arc<Loaded>>>,
    /// One permit per pooled instance: calls beyond the pool wait their turn instead of
    /// failing, so a burst of runs queues rather than erroring.
    slots: Arc<tokio::sync::Semaphore>,
    _ticker: EpochTicker,
}

/// The WASM ForgeHook host. Cheap to clone; all clones share one engine and one registry.
#[derive(Clone)]
pub struct WasmHost {
    inner: Arc<Inner>,
}

impl WasmHost {
    pub fn new(config: WasmHostConfig) -> Result<Self, HostError> {
        if config.max_timeout_ms == 0 || config.max_memory_mb == 0 || config.max_output_bytes == 0 {
            return Err(HostError::Config(
                "max_timeout_ms, max_memory_mb and max_output_bytes must be positive".into(),
            ));
        }
        let host_allowed = match &config.allowed_hosts {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| HostPattern::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(HostError::Config)?,
            ),
        };
        let engine = engine::build_engine(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Engine(format!("linking WASI: {e:#}")))?;
        Forgehook::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| HostError::Engine(format!("linking the host interface: {e:#}")))?;
        let key_path = config
            .cache_key_path
            .clone()
            .unwrap_or_else(|| cache::default_key_path(&config.cache_dir));
        let cache =
            ArtifactCache::open(&config.cache_dir, &key_path, &engine).map_err(|source| {
                HostError::Cache {
                    path: config.cache_dir.display().to_string(),
                    source,
                }
            })?;
        let private_allowed = leforge_net::PrivateAllowed::new(config.private_hosts.clone());
        let client = reqwest::Client::builder()
            // A granted host must not bounce a request to one that was not granted.
            .redirect(reqwest::redirect::Policy::none())
            // Names are resolved and checked by address; the checked addresses are the ones
            // connected to, so a name that rebinds between check and connect cannot pass.
            .dns_resolver(leforge_net::GuardedResolver::new(private_allowed.clone()))
            .user_agent(concat!("leforge-forgehook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HostError::Http(e.to_string()))?;
        let http = Arc::new(HttpPolicy {
            client,
            host_allowed,
            private_allowed,
            max_response_bytes: config.max_http_response_bytes,
        });
        let ticker = EpochTicker::start(engine.clone())?;
        let slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_calls.max(1) as usize,
        ));
        Ok(WasmHost {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                cache,
                http,
                hooks: RwLock::new(HashMap::new()),
                slots,
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &WasmHostConfig {
        &self.inner.config
    }

    /// Install step: checks that `wasm` is a component of our world, asks it to `describe`
    /// itself (unless `manifest_override` replaces that), validates the manifest, precompiles
    /// the component and stores both in the artifact cache. Nothing is loaded yet: call
    /// [`WasmHost::load_prepared`] once the install is recorded.
    pub async fn prepare(
        &self,
        wasm: &[u8],
        manifest_override: Option<Manifest>,
    ) -> Result<Prepared, InstallError> {
        let max = self.inner.config.max_component_bytes;
        if wasm.len() > max {
            return Err(InstallError::TooLarge {
                size: wasm.len(),
                max,
            });
        }
        check_component_header(wasm)?;
        let sha256 = sha256_hex(wasm);

        // Compiling takes seconds for a large guest: keep it off the async workers, on a
        // thread of its own rather than tokio's blocking pool, whose idle threads live on for
        // seconds holding the compile's freed memory (see `compile`).
        let engine = self.inner.engine.clone();
        let bytes = wasm.to_vec();
        let (done, compiled) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("leforge-compile".into())
            .spawn(move || {
                let result = compile(&engine, &bytes).and_then(|component| {
                    let compiled = component.serialize()?;
                    Ok((component, compiled))
                });
                // The receiver is gone only if the install was abandoned.
                let _ = done.send(result);
            })
            .map_err(|e| InstallError::Internal(format!("cannot start the compile thread: {e}")))?;
        let (component, compiled) = compiled
            .await
            .map_err(|_| {
                InstallError::Internal("the compile thread ended without a result".into())
            })?
            .map_err(|e| InstallError::Malformed(format!("{e:#}")))?;
        let pre = self.instance_pre(&component)?;

        let described = self.describe(&pre).await?;
        let manifest = match manifest_override {
            Some(m) => m,
            None => Manifest::from_json(&described)
                .map_err(|e| InstallError::InvalidManifest(vec![e]))?,
        };
        let validators = check_manifest(&manifest)?;

        self.inner.cache.store(&sha256, wasm, &compiled)?;
        Ok(Prepared {
            manifest,
            sha256,
            size_bytes: wasm.len(),
            pre,
            validators: Arc::new(validators),
        })
    }

    /// Makes a prepared ForgeHook callable, replacing any loaded one with the same id (an
    /// upgrade). `config` is its per-install configuration; keys the manifest does not
    /// declare are ignored.
    pub fn load_prepared(&self, prepared: Prepared, config: HashMap<String, String>) {
        let loaded = self.assemble(
            prepared.manifest,
            prepared.sha256,
            prepared.pre,
            prepared.validators,
            config,
        );
        self.insert(loaded);
    }

    /// Start-up step: loads an installed ForgeHook from the artifact cache by the digest
    /// recorded at install, without recompiling when the engine is unchanged. When the
    /// engine changed (a wasmtime upgrade), recompiles from the cached `.wasm` once.
    pub fn load(
        &self,
        manifest: Manifest,
        sha256: &str,
        config: HashMap<String, String>,
    ) -> Result<(), InstallError> {
        let validators = check_manifest(&manifest)?;
        let cache = &self.inner.cache;
        let component = match cache.load_compiled(sha256)? {
            Some(compiled) => self.deserialize(&compiled)?,
            None => {
                let wasm = cache
                    .load_wasm(sha256)?
                    .ok_or_else(|| InstallError::NotCached {
                        sha256: sha256.to_string(),
                    })?;
                let component = compile(&self.inner.engine, &wasm)
                    .map_err(|e| InstallError::Malformed(format!("{e:#}")))?;
                let compiled = component
                    .serialize()
                    .map_err(|e| InstallError::Internal(format!("{e:#}")))?;
                cache.store_compiled(sha256, &compiled)?;
                component
            }
        };
        let pre = self.instance_pre(&component)?;
        let loaded = self.assemble(
            manifest,
            sha256.to_string(),
            pre,
            Arc::new(validators),
            config,
        );
        self.insert(loaded);
        Ok(())
    }

    /// Stops serving a ForgeHook; calls already running finish. Returns whether it was loaded.
    pub fn unload(&self, id: &str) -> bool {
        self.write_hooks().remove(id).is_some()
    }

    /// Replaces a loaded ForgeHook's configuration. Returns whether it was loaded.
    pub fn set_config(&self, id: &str, config: HashMap<String, String>) -> bool {
        let Some(old) = self.get(id) else {
            return false;
        };
        let loaded = self.assemble(
            Manifest::clone(&old.manifest),
            old.sha256.clone(),
            old.pre.clone(),
            old.validators.clone(),
            config,
        );
        self.insert(loaded);
        true
    }

    /// Deletes a component's files from the artifact cache (after an uninstall, once no
    /// installed ForgeHook uses this digest any more).
    pub fn remove_artifacts(&self, sha256: &str) -> std::io::Result<()> {
        self.inner.cache.remove(sha256)
    }

    pub fn manifest(&self, id: &str) -> Option<Arc<Manifest>> {
        self.get(id).map(|l| l.manifest.clone())
    }

    /// The digest of the loaded component of `id`.
    pub fn sha256(&self, id: &str) -> Option<String> {
        self.get(id).map(|l| l.sha256.clone())
    }

    /// Every loaded ForgeHook's manifest, sorted by id.
    pub fn list(&self) -> Vec<Arc<Manifest>> {
        let hooks = self.inner.hooks.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = hooks.values().map(|l| l.manifest.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Calls `endpoint` of ForgeHook `id`: the input is checked against the endpoint's
    /// input schema first, then the call runs in a fresh instance under the ForgeHook's
    /// limits.
    pub async fn invoke(
        &self,
        id: &str,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        let started = Instant::now();
        let loaded = self
            .get(id)
            .ok_or_else(|| ToolError::not_found(format!("no ForgeHook '{id}' is installed")))?;
        let validator = loaded.validators.get(endpoint).ok_or_else(|| {
            ToolError::not_found(format!(
                "ForgeHook '{id}' has no endpoint '{endpoint}'; it has: {}",
                loaded
                    .manifest
                    .endpoints
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        ToolError::check_schema(
            validator
                .iter_errors(&input)
                .map(|e| (e.instance_path().to_string(), e)),
        )?;
        let input = serde_json::to_string(&input).map_err(|e| ToolError::Internal {
            message: e.to_string(),
        })?;

        let _slot = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ToolError::Unavailable {
                message: "the WASM host is shutting down".into(),
            })?;
        let returned = call::run(
            self.env(&loaded, loaded.limits),
            Call::Invoke {
                endpoint,
                input: &input,
            },
        )
        .await?;
        let Returned::Invoke(result) = returned else {
            return Err(ToolError::Internal {
                message: "unexpected call result".into(),
            });
        };
        let text = result.map_err(|e| {
            // The SDK reports undeserializable input this way; to the caller it is the same
            // mistake as input failing the schema.
            if e.code == "INVALID_INPUT" {
                ToolError::invalid_input(leforge_core::tool::capped(
                    &e.message,
                    leforge_core::tool::MAX_ERROR_MESSAGE_CHARS,
                ))
            } else {
                ToolError::guest(&e.code, &e.message)
            }
        })?;
        let limit = loaded.limits.max_output_bytes;
        if text.len() as u64 > limit {
            return Err(ToolError::OutputTooLarge {
                size: text.len() as u64,
                limit,
            });
        }
        let output = serde_json::from_str(&text).map_err(|e| ToolError::InvalidOutput {
            message: format!("not JSON: {e}"),
        })?;
        Ok(ToolOutput {
            output,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn env<'a>(&'a self, loaded: &'a Loaded, limits: CallLimits) -> CallEnv<'a> {
        CallEnv {
            engine: &self.inner.engine,
            pre: &loaded.pre,
            limits,
            grants: loaded.grants.clone(),
            http: self.inner.http.clone(),
            stdio_cap: self.inner.config.stdio_capture_bytes,
        }
    }

    async fn describe(&self, pre: &ForgehookPre<HostState>) -> Result<String, InstallError> {
        // Nothing is granted while describing: the manifest is not known yet.
        let grants = Arc::new(Grants {
            forgehook_id: Arc::from("(installing)"),
            manifest_hosts: Vec::new(),
            config: HashMap::new(),
        });
        let limits = CallLimits::host_max(&self.inner.config);
        let env = CallEnv {
            engine: &self.inner.engine,
            pre,
            limits,
            grants,
            http: self.inner.http.clone(),
            stdio_cap: self.inner.config.stdio_capture_bytes,
        };
        match call::run(env, Call::Describe).await {
            Ok(Returned::Describe(json)) => Ok(json),
            Ok(Returned::Invoke(_)) => Err(InstallError::Internal("unexpected call result".into())),
            Err(e) => Err(InstallError::Describe(format!("{} ({})", e, e.code()))),
        }
    }

    fn instance_pre(&self, component: &Component) -> Result<ForgehookPre<HostState>, InstallError> {
        // instantiate_pre resolves every import against the linker, so a component that
        // imports something we do not provide fails here, naming the import; the typed
        // wrapper then looks up `describe` and `invoke`, naming a missing export.
        let pre = self
            .inner
            .linker
            .instantiate_pre(component)
            .map_err(|e| InstallError::WorldMismatch(format!("{e:#}")))?;
        ForgehookPre::new(pre).map_err(|e| InstallError::WorldMismatch(format!("{e:#}")))
    }

    fn deserialize(&self, compiled: &[u8]) -> Result<Component, InstallError> {
        // SAFETY: `deserialize` trusts its input to be wasmtime's own output for this engine.
        // The bytes come from our cache directory, keyed by this engine's compatibility hash,
        // and passed an HMAC check under a key kept outside that directory, so only this host
        // (a holder of the key) can have written them; a corrupt or planted file is
        // recompiled from its original instead.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.inner.engine, compiled) };
        component.map_err(|e| InstallError::Internal(format!("cached artifact: {e:#}")))
    }

    fn assemble(
        &self,
        manifest: Manifest,
        sha256: String,
        pre: ForgehookPre<HostState>,
        validators: Arc<HashMap<String, jsonschema::Validator>>,
        mut config: HashMap<String, String>,
    ) -> Loaded {
        let declared: std::collections::HashSet<&str> = manifest
            .capabilities
            .config
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        config.retain(|k, _| declared.contains(k.as_str()));
        let grants = Arc::new(Grants {
            forgehook_id: Arc::from(manifest.id.as_str()),
            // Validated by check_manifest, so every pattern parses.
            manifest_hosts: manifest
                .capabilities
                .allowed_hosts
                .iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .collect(),
            config,
        });
        Loaded {
            limits: CallLimits::resolve(&manifest.capabilities.limits, &self.inner.config),
            manifest: Arc::new(manifest),
            sha256,
            pre,
            validators,
            grants,
        }
    }

    fn insert(&self, loaded: Loaded) {
        let id = loaded.manifest.id.clone();
        self.write_hooks().insert(id, Arc::new(loaded));
    }

    fn get(&self, id: &str) -> Option<Arc<Loaded>> {
        let hooks = self.inner.hooks.read().unwrap_or_else(|e| e.into_inner());
        hooks.get(id).cloned()
    }

    fn write_hooks(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Loaded>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is
        // always consistent (single insert/remove), so keep serving.
        self.inner.hooks.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ToolExecutor for WasmHost {
    async fn invoke(
        &self,
        forgehook_id: &str,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        WasmHost::invoke(self, forgehook_id, endpoint, input).await
    }
}

/// Compiles a component on a thread pool of its own that ends with the compile. wasmtime
/// spreads a compile over rayon threads; on rayon's global pool those threads live on, idle,
/// and the allocator keeps the compiler's freed scratch memory (tens of MB for the built-ins)
/// in their per-thread heaps for good. Threads that exit hand it back.
fn compile(engine: &wasmtime::Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("leforge-compile-{i}"))
        .build()
    {
        Ok(pool) => pool.install(|| Component::new(engine, wasm)),
        // No threads to be had: compile here, as wasmtime would without the pool.
        Err(_) => Component::new(engine, wasm),
    }
}

/// Gives a useful message for the two most common wrong uploads before the compiler gives a
/// cryptic one.
fn check_component_header(wasm: &[u8]) -> Result<(), InstallError> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(InstallError::Malformed(
            "the file is not WebAssembly (it does not start with \\0asm)".into(),
        ));
    }
    // Bytes 4..8: version and layer. Layer 0 is a core module, layer 1 a component.
    if wasm[6..8] == [0, 0] {
        return Err(InstallError::Malformed(
            "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
             (or wrap it with `wasm-tools component new`)"
                .into(),
        ));
    }
    Ok(())
}

/// Validates a manifest for this host and compiles each endpoint's input schema.
fn check_manifest(
    manifest: &Manifest,
) -> Result<HashMap<String, jsonschema::Validator>, InstallError> {
    let mut errors = manifest.validate();
    if manifest.runtime != RuntimeKind::Wasm {
        errors.push(FieldError::new(
            "runtime",
            format!(
                "must be wasm for a WebAssembly component, not {}",
                manifest.runtime
            ),
        ));
    }
    let mut validators = HashMap::new();
    for (i, ep) in manifest.endpoints.iter().enumerate() {
        if !ep.input_schema.is_object() {
            continue; // already reported by validate()
        }
        match jsonschema::validator_for(&ep.input_schema) {
            Ok(v) => {
                validators.insert(ep.name.clone(), v);
            }
            Err(e) => errors.push(FieldError::new(
                format!("endpoints[{i}].input_schema"),
                format!("is not a valid JSON Schema: {e}"),
            )),
        }
        if let Err(e) = jsonschema::meta::validate(&ep.output_schema) {
            errors.push(FieldError::new(
                format!("endpoints[{i}].output_schema"),
                format!("is not a valid JSON Schema: {e}"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(validators)
    } else {
        Err(InstallError::InvalidManifest(errors))
    }
}
