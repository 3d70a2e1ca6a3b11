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
}

forgehook!(hook);
