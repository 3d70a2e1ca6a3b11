//! The well-behaved test guest: echoes its input, and exercises the host functions that a
//! manifest can be granted (config, HTTP, clock, log).

use leforge_forgehook_sdk::{forgehook, host, Error, ForgeHook};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema)]
struct Echo {
    /// Any text.
    message: String,
    /// Any JSON, returned unchanged.
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize, JsonSchema)]
struct ConfigIn {
    key: String,
}

#[derive(Serialize, JsonSchema)]
struct ConfigOut {
    value: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct FetchIn {
    url: String,
}

#[derive(Serialize, JsonSchema)]
struct FetchOut {
    status: u16,
    body: String,
}

#[derive(Deserialize, JsonSchema)]
struct Empty {}

#[derive(Serialize, JsonSchema)]
struct NowOut {
    now_ms: u64,
}

#[derive(Serialize, JsonSchema)]
struct CallsOut {
    calls: u32,
}

/// Calls this instance has served. Every call gets a fresh instance, so the host's tests
/// expect 1 every time: anything else means state survived from an earlier call.
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn echo(input: Echo) -> Result<Echo, Error> {
    host::info(&format!("echoing {} bytes", input.message.len()));
    Ok(input)
}

fn config(input: ConfigIn) -> Result<ConfigOut, Error> {
    Ok(ConfigOut {
        value: host::config_get(&input.key),
    })
}

fn fetch(input: FetchIn) -> Result<FetchOut, Error> {
    let resp = host::http_get(&input.url).map_err(|e| Error::new("FETCH_FAILED", e))?;
    Ok(FetchOut {
        status: resp.status,
        body: String::from_utf8_lossy(&resp.body).into_owned(),
    })
}

fn now(_: Empty) -> Result<NowOut, Error> {
    Ok(NowOut {
        now_ms: host::now_ms(),
    })
}

fn calls(_: Empty) -> Result<CallsOut, Error> {
    Ok(CallsOut {
        calls: CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
    })
}

fn hook() -> ForgeHook {
    ForgeHook::new("echo", "Echo", env!("CARGO_PKG_VERSION"))
        .description("Test ForgeHook that echoes its input.")
        .category("testing")
        .tags(&["test"])
        .author("LeForge")
        .config_key(
            "greeting",
            "A value the `config` endpoint reads back.",
            false,
        )
        .secret("token", "A secret the `config` endpoint reads back.", false)
        .endpoint("echo", "Returns the input unchanged.", echo)
        .endpoint("config", "Reads a configuration value.", config)
        .endpoint("fetch", "GETs a URL through the host.", fetch)
        .endpoint("now", "Returns the host clock.", now)
        .endpoint(
            "calls",
            "Counts the calls this instance has served (always 1: each call is a fresh instance).",
            calls,
        )
}

forgehook!(hook);
