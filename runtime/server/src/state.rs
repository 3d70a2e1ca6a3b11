//! Shared application state, cloned cheaply into every handler. This is where the concrete
//! backends are wired behind the core traits.

use std::sync::Arc;

use leforge_core::Store;
use leforge_llm::{LlmConfig, LlmRouter};
use leforge_wasm::{WasmHost, WasmHostConfig};

use crate::config::Config;
use crate::forgehooks::Forgehooks;
use crate::runner::{Runner, RunnerSettings};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub forgehooks: Forgehooks,
    pub llm: LlmRouter,
    pub runner: Runner,
    pub rate_limiter: Arc<crate::rate_limit::RateLimiter>,
    /// The Rhai hook runner: compiles scripts on save, tests them, and runs them in the loop.
    pub hooks: leforge_scripting::RhaiHookRunner,
    /// Admin UI sign-in sessions (in memory).
    pub sessions: crate::ui::Sessions,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Wasm(#[from] leforge_wasm::HostError),
    #[error(transparent)]
    Llm(#[from] leforge_llm::InitError),
    #[error(transparent)]
    Hooks(#[from] leforge_scripting::RunnerError),
    #[error(transparent)]
    Container(#[from] leforge_container::ContainerError),
}

impl AppState {
    /// Builds the state with LLM providers configured from the environment.
    pub fn build(store: Arc<dyn Store>, config: Config) -> Result<Self, StateError> {
        Self::build_with_llm(store, config, LlmConfig::from_env())
    }

    /// Builds the state: the WASM host keeps its precompiled components under
    /// `<data-dir>/wasm-cache`; model aliases from the config file are laid over the defaults.
    pub fn build_with_llm(
        store: Arc<dyn Store>,
        config: Config,
        mut llm_config: LlmConfig,
    ) -> Result<Self, StateError> {
        if let Some(aliases) = &config.model_aliases {
            llm_config.aliases.merge(aliases);
        }
        let llm = LlmRouter::new(llm_config)?;
        crate::telemetry::install();
        let settings = RunnerSettings {
            webhook_secret: config.webhook_secret.clone(),
            callback_hosts: config.callback_allowed_hosts.clone(),
            shutdown_grace: std::time::Duration::from_millis(config.shutdown_grace_ms),
            lease_ttl: std::time::Duration::from_millis(config.run_lease_ms),
            renew_every: std::time::Duration::from_millis(config.run_lease_ms / 3),
            reap_every: std::time::Duration::from_millis(config.run_lease_ms / 2),
            max_concurrent_async: config.max_concurrent_runs,
            slot_wait: std::time::Duration::from_millis(config.run_slot_wait_ms),
            ..RunnerSettings::default()
        };
        let mut wasm_config = WasmHostConfig::new(config.data_dir.join("wasm-cache"));
        wasm_config.max_memory_mb = config.forgehook_max_memory_mb;
        wasm_config.max_timeout_ms = config.forgehook_max_timeout_ms;
        wasm_config.private_hosts = config.forgehook_private_hosts.clone();
        let wasm = WasmHost::new(wasm_config)?;
        let http_hooks = crate::forgehooks::HttpHooks::new(&config)?;
        let mcp = crate::mcp_servers::McpRegistry::new(
            store.clone(),
            &config.mcp_allowed_hosts,
            config.mcp_stdio_allowed,
        );
        let forgehooks = Forgehooks::new(store.clone(), wasm, http_hooks, mcp);
        // `import "name"` in a script resolves against the store. Building the state needs a
        // runtime (the store pool already does), so there is a handle to block on.
        let hooks = leforge_scripting::RhaiHookRunner::with_library(
            leforge_scripting::HookConfig::default(),
            Arc::new(crate::script_library::StoreLibrary::new(
                store.clone(),
                tokio::runtime::Handle::current(),
            )),
        )?;
        let settings = RunnerSettings {
            global_hooks: config.global_hooks.clone(),
            ..settings
        };
        let runner = Runner::new(
            leforge_agent::Deps {
                store: store.clone(),
                llm: Arc::new(crate::telemetry::TracedLlm(llm.clone())),
                tools: Arc::new(forgehooks.clone()),
                catalog: Arc::new(forgehooks.clone()),
                hooks: Some(Arc::new(hooks.clone())),
                toolboxes: Default::default(),
            },
            settings,
        );
        let rate_limiter = Arc::new(crate::rate_limit::RateLimiter::new(
            config.rate_limit_per_minute,
        ));
        Ok(AppState {
            hooks,
            sessions: Default::default(),
            rate_limiter,
            forgehooks,
            llm,
            runner,
            store,
            config: Arc::new(config),
        })
    }

    /// Largest accepted ForgeHook upload, with room for multipart framing.
    pub fn max_upload_bytes(&self) -> usize {
        self.forgehooks.wasm().config().max_component_bytes + (1 << 20)
    }
}
