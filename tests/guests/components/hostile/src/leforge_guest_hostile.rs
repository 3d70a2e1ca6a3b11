//! The hostile corpus: each endpoint misbehaves in one way the host must contain. Endpoints
//! that try to reach something they were not granted report what they saw: `BLOCKED` when
//! the sandbox held, a successful output (which the tests treat as a breach) when it did not.

use std::hint::black_box;

use leforge_forgehook_sdk::{forgehook, host, Error, ForgeHook};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct Empty {}

#[derive(Deserialize, JsonSchema)]
struct Target {
    /// A path, an address or a URL, depending on the endpoint.
    target: String,
}

#[derive(Serialize, JsonSchema)]
struct Leak {
    leaked: String,
}

#[derive(Serialize, JsonSchema)]
struct Big {
    data: String,
}

fn blocked(what: impl std::fmt::Display) -> Error {
    Error::new("BLOCKED", what.to_string())
}

fn spin(_: Empty) -> Result<Leak, Error> {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

fn memory_bomb(_: Empty) -> Result<Leak, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really committed, not just reserved.
        hoard.push(black_box(vec![1u8; 16 << 20]));
    }
}

#[allow(unconditional_recursion)]
fn depth(n: u64) -> u64 {
    // No locals in linear memory, so it is wasm's own call stack that overflows (a trap the
    // host recognises) rather than the shadow stack in linear memory.
    black_box(depth(black_box(n) + 1)).wrapping_add(1)
}

fn recurse(_: Empty) -> Result<Leak, Error> {
    Ok(Leak {
        leaked: depth(0).to_string(),
    })
}

fn big_output(_: Empty) -> Result<Big, Error> {
    Ok(Big {
        data: "x".repeat(100 << 20),
    })
}

fn panic(_: Empty) -> Result<Leak, Error> {
    panic!("hostile guest panicked on purpose")
}

fn read_file(input: Target) -> Result<Leak, Error> {
    std::fs::read_to_string(&input.target)
        .map(|leaked| Leak { leaked })
        .map_err(blocked)
}

fn read_env(_: Empty) -> Result<Leak, Error> {
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let args: Vec<String> = std::env::args().collect();
    let cwd = std::env::current_dir().ok();
    if vars.is_empty() && args.is_empty() {
        Err(blocked(format!("no env vars, no args, cwd {cwd:?}")))
    } else {
        Ok(Leak {
            leaked: format!("env {vars:?} args {args:?}"),
        })
    }
}

fn open_socket(input: Target) -> Result<Leak, Error> {
    std::net::TcpStream::connect(input.target.as_str())
        .map(|s| Leak {
            leaked: format!("connected to {:?}", s.peer_addr()),
        })
        .map_err(blocked)
}

fn fetch(input: Target) -> Result<Leak, Error> {
    host::http_get(&input.target)
        .map(|r| Leak {
            leaked: format!("status {}", r.status),
        })
        .map_err(blocked)
}

fn hook() -> ForgeHook {
    ForgeHook::new("hostile", "Hostile", env!("CARGO_PKG_VERSION"))
        .description("Misbehaves on purpose, for the sandbox tests.")
        .allow_host("https://api.example.com")
        .timeout_ms(5_000)
        // Room for the 100 MB output and its serialized copy, so that it is the output cap
        // that stops `big_output`.
        .memory_mb(512)
        .endpoint("spin", "Loops forever.", spin)
        .endpoint("memory_bomb", "Allocates without end.", memory_bomb)
        .endpoint("recurse", "Recurses without end.", recurse)
        .endpoint("big_output", "Returns 100 MB.", big_output)
        .endpoint("panic", "Panics.", panic)
        .endpoint("read_file", "Reads a host file.", read_file)
        .endpoint("read_env", "Reads env vars and args.", read_env)
        .endpoint("open_socket", "Opens a TCP connection.", open_socket)
        .endpoint("fetch", "Fetches a URL it was not granted.", fetch)
}

forgehook!(hook);
