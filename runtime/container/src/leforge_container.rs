//! Docker (bollard) lifecycle and HTTP invocation of container and gateway ForgeHooks.
//!
//! - [`ContainerRuntime`] runs `runtime: "container"` ForgeHooks: it pulls (or finds) the
//!   image, creates a locked-down container on the `leforge-forgehooks` bridge network, waits
//!   for its health check, calls its endpoints over HTTP, restarts it after a crash, stops it
//!   when idle and reconciles leftovers at start-up.
//! - [`GatewayRuntime`] runs `runtime: "gateway"` ForgeHooks: plain HTTP calls to a service
//!   that runs elsewhere.
//!
//! Both implement [`leforge_core::tool::ToolExecutor`]; the server's registry dispatches to
//! them by the manifest's runtime.

mod container_runtime;
mod docker;
mod errors;
mod gateway;
mod http_call;
#[cfg(feature = "testing")]
pub mod testing;

pub use container_runtime::{
    ContainerAccess, ContainerRuntime, ContainerRuntimeConfig, ContainerState, ContainerStatus,
    ReconcileReport, LABEL_FORGEHOOK, LABEL_INSTANCE, LABEL_SPEC,
};
pub use errors::ContainerError;
pub use gateway::GatewayRuntime;
