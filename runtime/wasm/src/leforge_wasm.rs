//! wasmtime component host for WASM ForgeHooks: limits, epochs, pooling, precompile cache.
