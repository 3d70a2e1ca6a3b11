//! `import "name" as m;` resolved against stored scripts, and nothing else: no files, no
//! URLs. Imported scripts run under the importing call's engine, so its limits and deadline
//! apply to them too.

use std::sync::{Arc, Mutex};

use leforge_core::hook::HookScript;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::Inner;

/// Where imports come from. Called on a hook worker thread (not an async one), so an
/// implementation may block, e.g. `Handle::block_on` a store lookup.
pub trait ScriptLibrary: Send + Sync + 'static {
    /// The stored script named `name`, if there is one.
    fn script(&self, name: &str) -> Option<HookScript>;
}

pub(crate) struct Resolver {
    inner: Arc<Inner>,
    library: Arc<dyn ScriptLibrary>,
    /// Imports being evaluated, outermost first: a name already here is a cycle, which would
    /// otherwise recurse until the stack ran out.
    active: Mutex<Vec<String>>,
}

impl Resolver {
    pub(crate) fn new(inner: Arc<Inner>, library: Arc<dyn ScriptLibrary>) -> Self {
        Resolver {
            inner,
            library,
            active: Mutex::new(Vec::new()),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        {
            let active = self.active();
            if active.iter().any(|a| a == path) {
                return Err(Box::new(EvalAltResult::ErrorInModule(
                    path.to_string(),
                    crate::helpers::HelperError::new(
                        "import",
                        "IMPORT_CYCLE",
                        format!("import cycle: {} -> {path}", active.join(" -> ")),
                    )
                    .into_eval(),
                    pos,
                )));
            }
            if active.len() >= self.inner.config.max_modules {
                return Err(Box::new(EvalAltResult::ErrorTooManyModules(pos)));
            }
        }
        let Some(script) = self.library.script(path) else {
            return Err(Box::new(EvalAltResult::ErrorModuleNotFound(
                path.to_string(),
                pos,
            )));
        };
        let compiled = self.inner.compiled(&script).map_err(|e| {
            let message = e.to_string();
            Box::new(EvalAltResult::ErrorInModule(
                path.to_string(),
                crate::helpers::HelperError::new("import", "INVALID_MODULE", message).into_eval(),
                pos,
            ))
        })?;
        self.active().push(path.to_string());
        let module = Module::eval_ast_as_new(Scope::new(), &compiled.ast, engine);
        self.active().pop();
        module
            .map(Shared::new)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos)))
    }
}
