//! Paths of the test ForgeHook components, built from components/ by build.rs for
//! wasm32-wasip2, plus helpers to read them. Used by the leforge-wasm tests and benchmarks.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The Python test guest's source directory (built by the tests with componentize-py).
pub const PYTHON_GUEST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python");

/// The WIT package the guests are built against.
pub const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../host-api/wit");

/// Reads one of the constants above.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read test guest {path}: {e}"))
}
