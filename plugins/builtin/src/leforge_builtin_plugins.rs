//! The built-in ForgeHooks, embedded in the binary so that a server's first start can install
//! them with no download and no build step.
//!
//! build.rs builds every crate under plugins/ marked `[package.metadata.leforge] builtin =
//! true` for wasm32-wasip2 (release) and embeds the components here with `include_bytes!`.
//!
//! ```ignore
//! for b in leforge_builtin_plugins::all() {
//!     let prepared = host.prepare(b.wasm, None).await?;
//!     assert_eq!(prepared.manifest.id, b.id);
//! }
//! ```

/// One built-in ForgeHook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// The ForgeHook id, e.g. `data-transform` (also what its manifest says).
    pub id: &'static str,
    /// The Cargo package it is built from, e.g. `leforge-plugin-data-transform`.
    pub package: &'static str,
    /// The wasm32-wasip2 component, ready for `WasmHost::prepare`.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Every built-in ForgeHook, sorted by id.
pub fn all() -> &'static [Builtin] {
    ALL
}

/// The built-in ForgeHook with this id.
pub fn get(id: &str) -> Option<&'static Builtin> {
    ALL.iter().find(|b| b.id == id)
}
