//! Host-side bindings of the `leforge:forgehook@0.1.0` world.
//!
//! Generated from the frozen WIT in host-api/wit. When a new package version is added
//! beside it, a second `bindgen!` goes here under its own module and the host picks one per
//! component by the version of the `leforge:forgehook/host` interface it imports (see
//! host-api/wit/README.md).

wasmtime::component::bindgen!({
    path: "../../host-api/wit",
    world: "forgehook",
    // Every import may await (http-fetch does real I/O); exports are called with
    // `call_async` so epochs can yield and the tokio timeout can cancel the call.
    imports: { default: async },
    exports: { default: async },
});

pub use leforge::forgehook::host::{HttpRequest, HttpResponse, LogLevel};
