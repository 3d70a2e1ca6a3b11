//! The contract between the agent loop and whatever executes a tool (a WASM or container
//! ForgeHook). The loop only ever sees this trait.
//!
//! Filled in by the WASM host issue; kept here so the dependency direction is fixed from the
//! start.
