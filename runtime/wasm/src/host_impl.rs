//! The per-call store data: a WASI p2 context with no ambient authority, capped stdout and
//! stderr, the memory limiter, and our `host` interface gated by the manifest's grants.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use leforge_core::forgehook::HostPattern;
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{leforge::forgehook::host, HttpRequest, HttpResponse, LogLevel};
use crate::limits::{CallLimits, MemoryLimiter};

/// A guest may log this many messages per call; more are dropped (a log flood is a cheap DoS).
const MAX_LOG_MESSAGES: u32 = 200;
const MAX_LOG_MESSAGE_CHARS: usize = 4_096;
/// Outbound requests per call.
const MAX_HTTP_REQUESTS: u32 = 32;

/// What one installed ForgeHook may reach, resolved at load time.
pub(crate) struct Grants {
    pub(crate) forgehook_id: Arc<str>,
    /// The manifest's `allowed_hosts`.
    pub(crate) manifest_hosts: Vec<HostPattern>,
    /// Only the keys the manifest declares; everything else reads as none.
    pub(crate) config: HashMap<String, String>,
}

/// Shared by every call: the HTTP client and the host-wide policy.
pub(crate) struct HttpPolicy {
    pub(crate) client: reqwest::Client,
    /// `None`: any host a manifest is granted; `Some`: the grant must also match one of these.
    pub(crate) host_allowed: Option<Vec<HostPattern>>,
    /// Hosts the operator allowed to be internal addresses.
    pub(crate) private_allowed: leforge_net::PrivateAllowed,
    pub(crate) max_response_bytes: usize,
}

/// A stdout/stderr sink that keeps the first `cap` bytes and silently drops the rest: a
/// guest that prints too much must neither exhaust host memory nor fail its own writes
/// (Rust's `println!` panics when a write fails).
#[derive(Clone)]
pub(crate) struct CappedPipe {
    buf: Arc<Mutex<Vec<u8>>>,
    cap: usize,
    truncated: Arc<AtomicBool>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        CappedPipe {
            buf: Arc::new(Mutex::new(Vec::new())),
            cap,
            truncated: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The captured text, marked when bytes were dropped.
    pub(crate) fn contents(&self) -> String {
        let buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = String::from_utf8_lossy(&buf).into_owned();
        if self.truncated.load(Ordering::Relaxed) {
            s.push_str(" …[truncated]");
        }
        s
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(buf.len());
        if data.len() > room {
            self.truncated.store(true, Ordering::Relaxed);
        }
        buf.extend_from_slice(&data[..data.len().min(room)]);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    /// Set by the epoch callback when the deadline passed.
    pub(crate) timed_out: bool,
    grants: Arc<Grants>,
    http: Arc<HttpPolicy>,
    logs_left: u32,
    requests_left: u32,
}

impl HostState {
    pub(crate) fn new(
        limits: &CallLimits,
        grants: Arc<Grants>,
        http: Arc<HttpPolicy>,
        stdio_cap: usize,
    ) -> Self {
        let stdout = CappedPipe::new(stdio_cap);
        let stderr = CappedPipe::new(stdio_cap);
        // The builder's defaults are the point: no preopened directories, no environment, no
        // arguments, stdin closed. Sockets are switched off explicitly on top of the default
        // address check that already denies everything.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits),
            stdout,
            stderr,
            timed_out: false,
            grants,
            http,
            logs_left: MAX_LOG_MESSAGES,
            requests_left: MAX_HTTP_REQUESTS,
        }
    }

    pub(crate) fn forgehook_id(&self) -> &str {
        &self.grants.forgehook_id
    }

    /// Checks a URL against the manifest's grants and the host's policy; the error is what
    /// the guest sees.
    fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL '{url}': {e}"))?;
        let scheme = parsed.scheme();
        let Some(host) = parsed.host_str() else {
            return Err(format!("URL '{url}' has no host"));
        };
        // IPv6 literals come bracketed from the URL parser; patterns are written bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port();
        if self.grants.manifest_hosts.is_empty() {
            return Err("network access was not granted to this ForgeHook (its manifest lists no allowed_hosts)".into());
        }
        if !self
            .grants
            .manifest_hosts
            .iter()
            .any(|p| p.matches(scheme, host, port))
        {
            return Err(format!(
                "host not allowed: {scheme}://{host} is not in this ForgeHook's allowed_hosts"
            ));
        }
        if let Some(allowed) = &self.http.host_allowed {
            if !allowed.iter().any(|p| p.matches(scheme, host, port)) {
                return Err(format!(
                    "host not allowed: {scheme}://{host} is not permitted by the server's configuration"
                ));
            }
        }
        // Names are checked by the client's resolver; a literal address never reaches it.
        leforge_net::check_literal(host, &self.http.private_allowed).map_err(|e| {
            format!(
                "host not allowed: {e} (the operator can allow it with LEFORGE_FORGEHOOK_PRIVATE_HOSTS)"
            )
        })?;
        Ok(parsed)
    }

    async fn fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, String> {
        if self.requests_left == 0 {
            return Err(format!(
                "too many HTTP requests in one call (at most {MAX_HTTP_REQUESTS})"
            ));
        }
        self.requests_left -= 1;
        let url = self.check_url(&request.url)?;
        let method = match request.method.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => {
                reqwest::Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?
            }
            other => return Err(format!("HTTP method '{other}' is not supported")),
        };
        let mut builder = self.http.client.request(method, url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| format!("request failed: {}", leforge_net::error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let max = self.http.max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the response failed: {e}"))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("the response body exceeds {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for HostState {
    async fn log(&mut self, level: LogLevel, message: String) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        let message: String = message.chars().take(MAX_LOG_MESSAGE_CHARS).collect();
        let id = self.forgehook_id();
        match level {
            LogLevel::Trace => tracing::trace!(forgehook = id, "{message}"),
            LogLevel::Debug => tracing::debug!(forgehook = id, "{message}"),
            LogLevel::Info => tracing::info!(forgehook = id, "{message}"),
            LogLevel::Warn => tracing::warn!(forgehook = id, "{message}"),
            LogLevel::Error => tracing::error!(forgehook = id, "{message}"),
        }
    }

    async fn http_fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, String> {
        let url = request.url.clone();
        let result = self.fetch(request).await;
        if let Err(e) = &result {
            tracing::info!(
                forgehook = self.forgehook_id(),
                url,
                "http-fetch refused or failed: {e}"
            );
        }
        result
    }

    async fn config_get(&mut self, key: String) -> Option<String> {
        self.grants.config.get(&key).cloned()
    }

    async fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}
