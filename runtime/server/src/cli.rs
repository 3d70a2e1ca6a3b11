//! Command-line entry: `leforge serve` and `leforge migrate`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use leforge_store::Migrate;

use crate::config::{Cli, Command, Config, ServerArgs};
use crate::state::AppState;

pub fn main() -> ExitCode {
    quiet_library_backtraces();
    let cli = Cli::parse();
    // A one-off run prints its own progress; the server's info lines would bury it.
    let quiet = matches!(cli.command, Command::Run(_) | Command::Healthcheck { .. });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Result::Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The span exporter sends its requests through this runtime.
    let tracing = {
        let _entered = runtime.enter();
        crate::telemetry::init_tracing(if quiet { "warn" } else { "info,sqlx=warn" })
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => Result::Ok(Some(crate::run_cli::run(args).await)),
            Command::Healthcheck { url, listen } => {
                Result::Ok(Some(healthcheck(url, listen).await))
            }
            Command::Serve(args) => serve(args).await.map(|()| None),
            Command::Migrate(args) => migrate(args).await.map(|()| None),
            Command::Forgehook(cmd) => crate::forgehook_cli::run(cmd).await.map(|()| None),
        }
    });
    runtime.block_on(tracing.shutdown());
    match result {
        Result::Ok(Some(code)) => code,
        Result::Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns off backtrace capture in error *values* unless `RUST_LIB_BACKTRACE` asks for it,
/// while `RUST_BACKTRACE` keeps governing panics. Why: with `RUST_BACKTRACE=1` set (common on
/// servers, and on CI machines), every library error captures a stack trace, and wasmtime
/// builds one such error each time a store is dropped, i.e. on every WASM tool call: the
/// unwinding was about 3% of the server's CPU under load (BENCHMARKS.md). Call it before
/// any thread starts: it sets a process environment variable.
pub fn quiet_library_backtraces() {
    if let Some(v) = lib_backtrace_default(std::env::var_os("RUST_LIB_BACKTRACE").as_deref()) {
        std::env::set_var("RUST_LIB_BACKTRACE", v);
    }
}

/// The `RUST_LIB_BACKTRACE` to set given the current one: an operator's choice is kept.
fn lib_backtrace_default(current: Option<&std::ffi::OsStr>) -> Option<&'static str> {
    current.is_none().then_some("0")
}

async fn healthcheck(url: Option<String>, listen: Option<SocketAddr>) -> ExitCode {
    let port = listen.map_or(4000, |l| l.port());
    let base = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let url = format!("{}/api/v1/health", base.trim_end_matches('/'));
    let answer = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        let body: serde_json::Value = client.get(&url).send().await?.json().await?;
        anyhow::Ok(body)
    };
    match answer.await {
        Result::Ok(body) if body["status"] == "ok" => ExitCode::SUCCESS,
        Result::Ok(body) => {
            eprintln!("unhealthy: {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the installed ForgeHooks and installs the built-in ones a database lacks: what a
/// server does at start, and `leforge run` in-process too.
pub(crate) async fn load_forgehooks(state: &AppState) -> anyhow::Result<()> {
    let loaded = state.forgehooks.load_installed().await?;
    tracing::info!(forgehooks = loaded, "ForgeHooks loaded");
    let builtins: Vec<(&str, &[u8])> = leforge_builtin_plugins::all()
        .iter()
        .map(|b| (b.id, b.wasm))
        .collect();
    let added = state
        .forgehooks
        .install_builtins(&builtins)
        .await
        .map_err(|e| anyhow::anyhow!("installing built-in ForgeHooks: {}", e.message))?;
    if !added.is_empty() {
        tracing::info!(forgehooks = ?added, "built-in ForgeHooks installed");
    }
    Result::Ok(())
}

pub(crate) async fn open_store(
    config: &Config,
) -> anyhow::Result<std::sync::Arc<dyn leforge_core::Store>> {
    if config.uses_sqlite() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
    }
    let store = leforge_store::connect(config.database_url.expose(), Migrate::Yes).await?;
    Result::Ok(store)
}

async fn migrate(args: ServerArgs) -> anyhow::Result<()> {
    let config = Config::resolve(&args)?;
    let store = open_store(&config).await?;
    eprintln!("database schema is up to date ({})", store.backend());
    Result::Ok(())
}

/// How often a server on PostgreSQL looks for ForgeHook changes stored by another server
/// sharing the database; the bound is 2 s, and the check is one small query.
const FORGEHOOK_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let config = Config::resolve(&args)?;
    let store = open_store(&config).await?;
    tracing::info!(database = store.backend(), "database ready");
    let admin_key = config.admin_key.as_ref().map(|k| k.expose().to_string());
    if let Some(key) = crate::auth::bootstrap_admin(store.as_ref(), admin_key.as_deref()).await? {
        // Printed once, on first start, to stderr only: there is no other way to get in.
        eprintln!(
            "\n  LeForge first start: an admin API key was generated. It will not be shown again.\n\n    LEFORGE ADMIN KEY: {key}\n\n  Use it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'.\n"
        );
    }
    let listen = config.listen;
    let state = AppState::build(store, config)?;
    let uses_sqlite = state.config.uses_sqlite();
    load_forgehooks(&state).await?;
    // Runs left running by a previous process whose lease has lapsed.
    let reaped = state.runner.reap_once().await;
    if reaped > 0 {
        tracing::warn!(
            runs = reaped,
            "runs interrupted by an earlier stop were marked interrupted"
        );
    }
    state.runner.start_background();
    if !uses_sqlite {
        // Other servers may share this database: their ForgeHook changes apply here too.
        state.forgehooks.watch_store(FORGEHOOK_SYNC_EVERY);
    }
    let runner = state.runner.clone();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!("LeForge Agent Runtime listening on http://{local}");
    axum::serve(
        crate::app::no_delay(listener),
        crate::app::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Stop taking runs and let running ones finish (bounded) before the listener closes.
        runner.shutdown().await;
    })
    .await?;
    tracing::info!("server stopped");
    Result::Ok(())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests are then allowed to finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Result::Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_backtraces_default_off_but_an_explicit_setting_wins() {
        assert_eq!(lib_backtrace_default(None), Some("0"));
        assert_eq!(lib_backtrace_default(Some(std::ffi::OsStr::new("1"))), None);
        assert_eq!(lib_backtrace_default(Some(std::ffi::OsStr::new("0"))), None);
    }
}
