//! Hook scripts from the store, for the Rhai runner: `import "name"` inside a script, and the
//! chain of scripts a run applies (global hooks, then the agent's).

use std::sync::Arc;

use leforge_core::hook::{HookChain, HookScript};
use leforge_core::{Agent, Store};

/// `import "name"` resolved against the `scripts` table. The runner calls it on a hook worker
/// thread (not a runtime thread), so blocking on the store there is allowed.
pub struct StoreLibrary {
    store: Arc<dyn Store>,
    handle: tokio::runtime::Handle,
}

impl StoreLibrary {
    pub fn new(store: Arc<dyn Store>, handle: tokio::runtime::Handle) -> Self {
        StoreLibrary { store, handle }
    }
}

impl leforge_scripting::ScriptLibrary for StoreLibrary {
    fn script(&self, name: &str) -> Option<HookScript> {
        let store = self.store.clone();
        let name = name.to_string();
        // Spawned on the runtime, then waited for here: the store's pool expects to be
        // polled by runtime threads.
        let task = self
            .handle
            .spawn(async move { store.find_script(&name).await });
        match self.handle.block_on(task) {
            Ok(Ok(Some(script))) => Some(script.to_hook_script()),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "loading an imported script failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// The scripts a run of `agent` applies: `global` (names or ids, as configured) first, then
/// the agent's own. Any script that no longer exists is an error naming it, so the run fails
/// at start rather than running with part of its hooks.
pub async fn resolve_chain(
    store: &dyn Store,
    global: &[String],
    agent: &Agent,
) -> Result<HookChain, String> {
    if global.is_empty() && agent.hooks.is_empty() {
        return Ok(HookChain::default());
    }
    let mut globals = Vec::with_capacity(global.len());
    for name in global {
        match store.find_script(name).await.map_err(|e| e.to_string())? {
            Some(s) => globals.push(s.to_hook_script()),
            None => {
                return Err(format!(
                    "the global hook script '{name}' (LEFORGE_GLOBAL_HOOKS) does not exist"
                ))
            }
        }
    }
    let mut own = Vec::with_capacity(agent.hooks.len());
    for id in &agent.hooks {
        match store
            .find_script(&id.to_string())
            .await
            .map_err(|e| e.to_string())?
        {
            Some(s) => own.push(s.to_hook_script()),
            None => {
                return Err(format!(
                    "the agent's hook script {id} no longer exists; update the agent's hooks"
                ))
            }
        }
    }
    Ok(HookChain::new(globals, own))
}
