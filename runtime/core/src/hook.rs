//! The contract between the agent loop and user hook scripts (Rhai) run before and after
//! runs and tool calls.
//!
//! Filled in by the Rhai hooks issue; kept here so the dependency direction is fixed from the
//! start.
