//! `leforge forgehook install|list`: against a running server over HTTP, or directly
//! against the database (the same registry code the server uses).

use anyhow::{anyhow, bail, Context};
use leforge_core::forgehook::Manifest;
use serde_json::Value;

use crate::config::{Config, ForgehookCommand, Target};
use crate::routes::forgehooks::ForgehookView;
use crate::state::AppState;

pub async fn run(command: ForgehookCommand) -> anyhow::Result<()> {
    match command {
        ForgehookCommand::Install {
            file,
            manifest,
            target,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let manifest_text = match &manifest {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            let view = match &target.server {
                Some(url) => install_remote(url, &target, wasm, manifest_text).await?,
                None => install_local(&target, &wasm, manifest_text.as_deref()).await?,
            };
            let version = view["version"].as_str().unwrap_or("?");
            let endpoints = view["endpoints"].as_array().map_or(0, Vec::len);
            println!(
                "installed {} {} ({} endpoints)",
                view["id"].as_str().unwrap_or("?"),
                version,
                endpoints
            );
            Ok(())
        }
        ForgehookCommand::List { target } => {
            let hooks = match &target.server {
                Some(url) => list_remote(url, &target).await?,
                None => list_local(&target).await?,
            };
            print_table(&hooks);
            Ok(())
        }
    }
}

/// The server's state on the database the settings name, without a listener.
pub(crate) async fn local_state(
    target: &Target,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<AppState> {
    let mut config = Config::resolve(&target.db)?;
    adjust(&mut config);
    let store = crate::cli::open_store(&config).await?;
    Ok(AppState::build(store, config)?)
}

async fn install_local(
    target: &Target,
    wasm: &[u8],
    manifest: Option<&str>,
) -> anyhow::Result<Value> {
    let state = local_state(target, |_| {}).await?;
    let manifest = manifest
        .map(|m| {
            Manifest::from_json(m).map_err(|e| anyhow!("manifest: {}: {}", e.field, e.message))
        })
        .transpose()?;
    let (hook, _) = state
        .forgehooks
        .install_wasm(wasm, manifest, false)
        .await
        .map_err(|e| anyhow!("{}", e.message))?;
    Ok(serde_json::to_value(ForgehookView::from_installed(&hook))?)
}

async fn list_local(target: &Target) -> anyhow::Result<Vec<Value>> {
    let state = local_state(target, |_| {}).await?;
    let hooks = state
        .forgehooks
        .list()
        .await
        .map_err(|e| anyhow!("{}", e.message))?;
    hooks
        .iter()
        .map(|h| Ok(serde_json::to_value(ForgehookView::from_installed(h))?))
        .collect()
}

pub(crate) fn endpoint(url: &str, path: &str) -> String {
    format!("{}/api/v1{path}", url.trim_end_matches('/'))
}

fn with_key(req: reqwest::RequestBuilder, target: &Target) -> reqwest::RequestBuilder {
    match &target.api_key {
        Some(key) => req.header("x-api-key", key),
        None => req,
    }
}

/// Unwraps the envelope, turning a failure into its message.
async fn envelope(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("the server answered {status} without a JSON envelope"))?;
    if body["success"] == Value::Bool(true) {
        return Ok(body["data"].clone());
    }
    let err = &body["error"];
    bail!(
        "{} {}: {}{}",
        status.as_u16(),
        err["code"].as_str().unwrap_or("ERROR"),
        err["message"].as_str().unwrap_or(""),
        match err.get("details") {
            Some(d) if !d.is_null() => format!(" ({d})"),
            _ => String::new(),
        }
    )
}

async fn install_remote(
    url: &str,
    target: &Target,
    wasm: Vec<u8>,
    manifest: Option<String>,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let req = client.post(endpoint(url, "/forgehooks"));
    let req = match manifest {
        None => req.header("content-type", "application/wasm").body(wasm),
        Some(m) => {
            let form = reqwest::multipart::Form::new()
                .part(
                    "wasm",
                    reqwest::multipart::Part::bytes(wasm).file_name("forgehook.wasm"),
                )
                .part("manifest", reqwest::multipart::Part::text(m));
            req.multipart(form)
        }
    };
    let resp = with_key(req, target)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    envelope(resp).await
}

async fn list_remote(url: &str, target: &Target) -> anyhow::Result<Vec<Value>> {
    let client = reqwest::Client::new();
    let resp = with_key(client.get(endpoint(url, "/forgehooks")), target)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    match envelope(resp).await? {
        Value::Array(items) => Ok(items),
        other => bail!("unexpected list: {other}"),
    }
}

fn print_table(hooks: &[Value]) {
    if hooks.is_empty() {
        println!("no ForgeHooks installed");
        return;
    }
    println!(
        "{:<24} {:<10} {:<8} {:<8} ENDPOINTS",
        "ID", "VERSION", "RUNTIME", "ENABLED"
    );
    for h in hooks {
        let endpoints: Vec<&str> = h["endpoints"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        println!(
            "{:<24} {:<10} {:<8} {:<8} {}",
            h["id"].as_str().unwrap_or("?"),
            h["version"].as_str().unwrap_or("?"),
            h["runtime"].as_str().unwrap_or("?"),
            h["enabled"].as_bool().unwrap_or(false),
            endpoints.join(", ")
        );
    }
}
