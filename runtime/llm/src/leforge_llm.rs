//! LLM provider adapters behind the core LlmClient trait.
