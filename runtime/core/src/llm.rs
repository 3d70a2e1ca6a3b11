//! The provider-neutral conversation and the `LlmClient` contract every provider adapter
//! implements.
//!
//! Filled in by the LLM providers issue.
