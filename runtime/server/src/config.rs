//! Configuration: command-line flags, each also an environment variable, over an optional
//! TOML file, over defaults. Resolved once at start-up into `Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_DATA_DIR: &str = "./leforge-data";
/// Run inputs carry whole CSV or JSON documents; 10 MiB covers them without inviting abuse.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "leforge", version, about = "LeForge Agent Runtime")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP server (runs migrations first).
    Serve(ServerArgs),
    /// Bring the database schema up to date and exit.
    Migrate(ServerArgs),
    /// Install and list ForgeHooks, through a running server or directly in the database.
    #[command(subcommand)]
    Forgehook(ForgehookCommand),
    /// Run an agent once and print its output JSON on stdout: through a running server
    /// (`--server`), or in this process on the configured database. Exit status: 0 when
    /// the run completed, 1 when it did not (its error code on stderr), 2 for usage errors.
    Run(RunArgs),
    /// Exit 0 when the server at --url answers its health route with "ok", else 1: the
    /// container image's HEALTHCHECK, which has no curl to do it.
    Healthcheck {
        /// Base URL of the server [default: http://127.0.0.1:<port of LEFORGE_LISTEN>]
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "LEFORGE_LISTEN", hide = true)]
        listen: Option<SocketAddr>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent's slug or id.
    pub agent: String,
    /// The instruction, in plain words.
    pub instruction: String,
    /// A JSON file with the run's data, or `-` for standard input.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `sync` waits on one request; `async` queues the run and polls for its end.
    #[arg(long, value_enum, default_value = "sync")]
    pub mode: CliRunMode,
    /// Show each step on stderr even when stdout is not a terminal.
    #[arg(long)]
    pub progress: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliRunMode {
    Sync,
    Async,
}

#[derive(Debug, Subcommand)]
pub enum ForgehookCommand {
    /// Install (or upgrade) a ForgeHook from a .wasm component.
    Install {
        /// The component file.
        file: PathBuf,
        /// A manifest JSON file that replaces the component's own describe().
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// List installed ForgeHooks.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// Where a CLI command acts: a running server (`--server`) or, without it, the database the
/// server settings name. Through the database, a running server sees the change after
/// its next restart; through `--server` at once.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Base URL of a running server, e.g. http://127.0.0.1:4000
    #[arg(long, env = "LEFORGE_SERVER_URL")]
    pub server: Option<String>,
    /// API key for --server (admin for ForgeHook commands).
    #[arg(long, env = "LEFORGE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub db: ServerArgs,
}

/// Flags shared by the commands that open the database.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// TOML file with the same settings; flags and environment variables win over it.
    #[arg(long, env = "LEFORGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:4000]
    #[arg(long, env = "LEFORGE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// postgres://… for PostgreSQL; when absent, SQLite at <data-dir>/leforge.db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for the SQLite database and caches [default: ./leforge-data]
    #[arg(long, env = "LEFORGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Bootstrap admin API key; when absent, one is generated on first start.
    #[arg(long, env = "LEFORGE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Largest accepted request body in bytes [default: 10485760]
    #[arg(long, env = "LEFORGE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Cap on any ForgeHook's memory, whatever its manifest asks [default: 512]
    #[arg(long, env = "LEFORGE_FORGEHOOK_MAX_MEMORY_MB")]
    pub forgehook_max_memory_mb: Option<u64>,
    /// Cap on any ForgeHook call's time, whatever its manifest asks [default: 60000]
    #[arg(long, env = "LEFORGE_FORGEHOOK_MAX_TIMEOUT_MS")]
    pub forgehook_max_timeout_ms: Option<u64>,
    /// Secret for the X-LeForge-Signature HMAC of run callbacks; callbacks need it.
    #[arg(long, env = "LEFORGE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Comma-separated hosts callback_url may point at (default: any).
    #[arg(long, env = "LEFORGE_CALLBACK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub callback_allowed_hosts: Option<Vec<String>>,
    /// How long shutdown waits for running runs before interrupting them [default: 30000]
    #[arg(long, env = "LEFORGE_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// A running run's lease; a run whose server stops renewing it for this long becomes
    /// `interrupted` [default: 30000]
    #[arg(long, env = "LEFORGE_RUN_LEASE_MS")]
    pub run_lease_ms: Option<u64>,
    /// Runs (async, sync and stream) one server executes at once [default: 1024]
    #[arg(long, env = "LEFORGE_MAX_CONCURRENT_RUNS")]
    pub max_concurrent_runs: Option<usize>,
    /// How long a sync or stream run waits for a free slot before 429 [default: 10000]
    #[arg(long, env = "LEFORGE_RUN_SLOT_WAIT_MS")]
    pub run_slot_wait_ms: Option<u64>,
    /// Comma-separated hosts a WASM ForgeHook's http-fetch may reach even though they
    /// resolve to loopback or private addresses [default: none]
    #[arg(long, env = "LEFORGE_FORGEHOOK_PRIVATE_HOSTS", value_delimiter = ',')]
    pub forgehook_private_hosts: Option<Vec<String>>,
    /// Comma-separated browser origins (scheme://host:port) that may call `/mcp`; a request
    /// with any other `Origin` is refused, one without `Origin` passes [default: none]
    #[arg(long, env = "LEFORGE_MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub mcp_allowed_origins: Option<Vec<String>>,
    /// Comma-separated hosts a registered MCP server's `url` may name even though they
    /// resolve to loopback or private addresses [default: none]
    #[arg(long, env = "LEFORGE_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub mcp_allowed_hosts: Option<Vec<String>>,
    /// Allow registering MCP servers that run as local child processes (stdio). They are
    /// not sandboxed: they run with the server's user and rights [default: false]
    #[arg(long, env = "LEFORGE_MCP_STDIO_ALLOWED", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub mcp_stdio_allowed: Option<bool>,
    /// Requests per minute per API key (or client address); 0 turns the limit off [default: 0]
    #[arg(long, env = "LEFORGE_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Comma-separated hook scripts (names or ids) applied to every agent's runs, before the
    /// agent's own hooks [default: none]
    #[arg(long, env = "LEFORGE_GLOBAL_HOOKS", value_delimiter = ',')]
    pub global_hooks: Option<Vec<String>>,
    /// Docker engine for container ForgeHooks: unix:///… or tcp://… [default: the local socket]
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Cap on a container ForgeHook's memory, also its default [default: 256]
    #[arg(long, env = "LEFORGE_CONTAINER_MAX_MEMORY_MB")]
    pub container_max_memory_mb: Option<u64>,
    /// Cap on a container ForgeHook's CPUs (fractions allowed), also its default [default: 1]
    #[arg(long, env = "LEFORGE_CONTAINER_MAX_CPUS")]
    pub container_max_cpus: Option<f64>,
    /// Cap on a container ForgeHook's processes/threads, also its default [default: 128]
    #[arg(long, env = "LEFORGE_CONTAINER_MAX_PIDS")]
    pub container_max_pids: Option<u64>,
    /// How the server reaches containers: `network` (their address on the ForgeHook bridge
    /// network) or `loopback` (a port published on 127.0.0.1, for Docker Desktop or
    /// rootless engines) [default: network]
    #[arg(long, env = "LEFORGE_CONTAINER_ACCESS")]
    pub container_access: Option<String>,
    /// Let container ForgeHooks whose manifest lists `capabilities.allowed_hosts` reach the
    /// network (all of it: containers are not filtered per host). Off: such manifests are
    /// refused, and every container sits on an internal network [default: false]
    #[arg(long, env = "LEFORGE_FORGEHOOK_CONTAINER_EGRESS", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub forgehook_container_egress: Option<bool>,
    /// Cap on any container or gateway ForgeHook response, in bytes [default: 16777216]
    #[arg(long, env = "LEFORGE_HTTP_FORGEHOOK_MAX_RESPONSE_BYTES")]
    pub http_forgehook_max_response_bytes: Option<u64>,
    /// Serve GET /metrics without a key (for a scraper on a private network). Off: it
    /// needs an admin key as a Bearer token [default: false]
    #[arg(long, env = "LEFORGE_METRICS_PUBLIC", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_public: Option<bool>,
}

/// The TOML file. Unknown keys are an error: a typo must not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_key: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub forgehook_max_memory_mb: Option<u64>,
    pub forgehook_max_timeout_ms: Option<u64>,
    /// Model aliases over the built-in table: `[model_aliases.global]` for every provider,
    /// `[model_aliases.per_provider.<provider>]` for one.
    pub model_aliases: Option<leforge_llm::ModelAliases>,
    pub webhook_secret: Option<String>,
    pub callback_allowed_hosts: Option<Vec<String>>,
    pub shutdown_grace_ms: Option<u64>,
    pub run_lease_ms: Option<u64>,
    pub max_concurrent_runs: Option<usize>,
    pub run_slot_wait_ms: Option<u64>,
    pub forgehook_private_hosts: Option<Vec<String>>,
    pub mcp_allowed_origins: Option<Vec<String>>,
    pub mcp_allowed_hosts: Option<Vec<String>>,
    pub mcp_stdio_allowed: Option<bool>,
    pub rate_limit_per_minute: Option<u32>,
    pub global_hooks: Option<Vec<String>>,
    pub docker_host: Option<String>,
    pub container_max_memory_mb: Option<u64>,
    pub container_max_cpus: Option<f64>,
    pub container_max_pids: Option<u64>,
    pub container_access: Option<String>,
    pub forgehook_container_egress: Option<bool>,
    pub http_forgehook_max_response_bytes: Option<u64>,
    pub metrics_public: Option<bool>,
}

/// A value that must never be printed. Debug shows only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Always set after resolution: the SQLite URL is derived from the data dir.
    pub database_url: Secret,
    pub data_dir: PathBuf,
    pub admin_key: Option<Secret>,
    pub max_body_bytes: usize,
    pub forgehook_max_memory_mb: u64,
    pub forgehook_max_timeout_ms: u64,
    pub model_aliases: Option<leforge_llm::ModelAliases>,
    pub webhook_secret: Option<Secret>,
    pub callback_allowed_hosts: Option<Vec<String>>,
    pub shutdown_grace_ms: u64,
    pub run_lease_ms: u64,
    pub max_concurrent_runs: usize,
    pub run_slot_wait_ms: u64,
    pub forgehook_private_hosts: Vec<String>,
    /// Browser origins that may call `/mcp` (none: browsers may not).
    pub mcp_allowed_origins: Vec<String>,
    /// Hosts MCP server URLs may name although they resolve to private addresses.
    pub mcp_allowed_hosts: Vec<String>,
    /// Whether stdio (child process) MCP servers may be registered and run.
    pub mcp_stdio_allowed: bool,
    pub rate_limit_per_minute: u32,
    /// Hook scripts (names or ids) run for every agent, before the agent's own, in order.
    pub global_hooks: Vec<String>,
    /// `None`: bollard's default (`DOCKER_HOST`, else the local socket).
    pub docker_host: Option<String>,
    pub container_max_memory_mb: u64,
    pub container_max_cpus: f64,
    pub container_max_pids: u64,
    pub container_access: ContainerAccessMode,
    pub forgehook_container_egress: bool,
    pub http_forgehook_max_response_bytes: u64,
    pub metrics_public: bool,
}

/// How the server reaches container ForgeHooks (see `--container-access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerAccessMode {
    #[default]
    Network,
    Loopback,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {0}")]
    Invalid(String),
}

/// A comma-separated list as configured: entries trimmed, empty ones dropped.
fn trimmed_list(list: Option<Vec<String>>) -> Vec<String> {
    list.unwrap_or_default()
        .into_iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

impl Config {
    pub fn resolve(args: &ServerArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid("default listen address".into()))?,
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = match args.database_url.clone().or(file.database_url) {
            Some(url) if !url.trim().is_empty() => url,
            _ => leforge_store::sqlite_url_for_path(&data_dir.join("leforge.db")),
        };
        let admin_key = args
            .admin_key
            .clone()
            .or(file.admin_key)
            .filter(|k| !k.is_empty());
        if let Some(key) = &admin_key {
            if key.len() < 16 {
                return Err(ConfigError::Invalid(
                    "admin key: LEFORGE_ADMIN_KEY must be at least 16 characters".into(),
                ));
            }
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        let forgehook_max_memory_mb = args
            .forgehook_max_memory_mb
            .or(file.forgehook_max_memory_mb)
            .unwrap_or(512);
        let forgehook_max_timeout_ms = args
            .forgehook_max_timeout_ms
            .or(file.forgehook_max_timeout_ms)
            .unwrap_or(60_000);
        if forgehook_max_memory_mb == 0 || forgehook_max_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "forgehook_max_memory_mb and forgehook_max_timeout_ms must be positive".into(),
            ));
        }
        let container_max_memory_mb = args
            .container_max_memory_mb
            .or(file.container_max_memory_mb)
            .unwrap_or(256);
        // Docker refuses less than 6 MB; a smaller cap could never start anything.
        if container_max_memory_mb < 6 {
            return Err(ConfigError::Invalid(
                "container_max_memory_mb must be at least 6".into(),
            ));
        }
        let container_max_cpus = args
            .container_max_cpus
            .or(file.container_max_cpus)
            .unwrap_or(1.0);
        if !(container_max_cpus.is_finite() && container_max_cpus >= 0.01) {
            return Err(ConfigError::Invalid(
                "container_max_cpus must be at least 0.01".into(),
            ));
        }
        let container_max_pids = args
            .container_max_pids
            .or(file.container_max_pids)
            .unwrap_or(128);
        let http_forgehook_max_response_bytes = args
            .http_forgehook_max_response_bytes
            .or(file.http_forgehook_max_response_bytes)
            .unwrap_or(16 * 1024 * 1024);
        if container_max_pids == 0 || http_forgehook_max_response_bytes == 0 {
            return Err(ConfigError::Invalid(
                "container_max_pids and http_forgehook_max_response_bytes must be positive".into(),
            ));
        }
        let container_access = match args
            .container_access
            .clone()
            .or(file.container_access)
            .as_deref()
        {
            None | Some("network") => ContainerAccessMode::Network,
            Some("loopback") => ContainerAccessMode::Loopback,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "container_access must be network or loopback, not {other}"
                )))
            }
        };
        Ok(Config {
            docker_host: args
                .docker_host
                .clone()
                .or(file.docker_host)
                .filter(|h| !h.trim().is_empty()),
            container_max_memory_mb,
            container_max_cpus,
            container_max_pids,
            container_access,
            forgehook_container_egress: args
                .forgehook_container_egress
                .or(file.forgehook_container_egress)
                .unwrap_or(false),
            http_forgehook_max_response_bytes,
            metrics_public: args.metrics_public.or(file.metrics_public).unwrap_or(false),
            webhook_secret: args
                .webhook_secret
                .clone()
                .or(file.webhook_secret)
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            callback_allowed_hosts: args
                .callback_allowed_hosts
                .clone()
                .or(file.callback_allowed_hosts)
                .map(|hosts| {
                    hosts
                        .into_iter()
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                }),
            shutdown_grace_ms: args
                .shutdown_grace_ms
                .or(file.shutdown_grace_ms)
                .unwrap_or(30_000),
            run_lease_ms: args
                .run_lease_ms
                .or(file.run_lease_ms)
                .unwrap_or(30_000)
                .max(300),
            max_concurrent_runs: args
                .max_concurrent_runs
                .or(file.max_concurrent_runs)
                .unwrap_or(1024)
                .max(1),
            run_slot_wait_ms: args
                .run_slot_wait_ms
                .or(file.run_slot_wait_ms)
                .unwrap_or(10_000),
            forgehook_private_hosts: trimmed_list(
                args.forgehook_private_hosts
                    .clone()
                    .or(file.forgehook_private_hosts),
            ),
            mcp_allowed_origins: trimmed_list(
                args.mcp_allowed_origins
                    .clone()
                    .or(file.mcp_allowed_origins),
            ),
            mcp_allowed_hosts: trimmed_list(
                args.mcp_allowed_hosts.clone().or(file.mcp_allowed_hosts),
            ),
            mcp_stdio_allowed: args
                .mcp_stdio_allowed
                .or(file.mcp_stdio_allowed)
                .unwrap_or(false),
            rate_limit_per_minute: args
                .rate_limit_per_minute
                .or(file.rate_limit_per_minute)
                .unwrap_or(0),
            global_hooks: args
                .global_hooks
                .clone()
                .or(file.global_hooks)
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            model_aliases: file.model_aliases,
            forgehook_max_memory_mb,
            forgehook_max_timeout_ms,
            listen,
            database_url: Secret::new(database_url),
            data_dir,
            admin_key: admin_key.map(Secret::new),
            max_body_bytes,
        })
    }

    pub fn uses_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_sqlite_in_the_data_dir() {
        let cfg = Config::resolve(&ServerArgs::default()).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:4000");
        assert!(cfg.uses_sqlite());
        assert!(cfg
            .database_url
            .expose()
            .contains("leforge-data/leforge.db"));
        assert!(
            !format!("{cfg:?}").contains("leforge.db"),
            "url is redacted"
        );
    }

    #[test]
    fn file_settings_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leforge.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            data_dir: Some("/tmp/y".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(&args).unwrap();
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/y"));
    }

    #[test]
    fn global_hooks_from_the_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leforge.toml");
        std::fs::write(&path, "global_hooks = [\"redact_pii\", \" audit_log \"]\n").unwrap();
        let mut args = ServerArgs {
            config: Some(path),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&args).unwrap().global_hooks,
            ["redact_pii", "audit_log"]
        );
        args.global_hooks = Some(vec!["a".into(), "".into()]);
        assert_eq!(Config::resolve(&args).unwrap().global_hooks, ["a"]);
        assert!(Config::resolve(&ServerArgs::default())
            .unwrap()
            .global_hooks
            .is_empty());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leforge.toml");
        std::fs::write(&path, "listn = \"0.0.0.0:9000\"\n").unwrap();
        let err = Config::resolve(&ServerArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
