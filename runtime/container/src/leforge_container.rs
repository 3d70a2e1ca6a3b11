//! Docker (bollard) lifecycle and HTTP invocation of container and gateway ForgeHooks.
