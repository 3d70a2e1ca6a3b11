//! The operator's view inside the server: the Prometheus recorder behind `GET /metrics`,
//! and the HTTP series. The agent and LLM crates record their series through the `metrics`
//! facade; this module installs the one recorder they record into.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::state::AppState;

/// Seconds: from a fast tool call (a millisecond) to a long run (ten minutes).
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
    600.0,
];

/// The route label of requests no route matched: one value, whatever the path was.
pub const UNMATCHED_ROUTE: &str = "unmatched";

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder, once (every server built in this process shares it).
/// `None` when another recorder was installed first, by an embedding program.
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
                return None;
            }
            describe();
            // Histogram samples wait in per-thread buffers until upkeep folds them in; a
            // render does it too, but a server nobody scrapes would keep growing them.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "leforge_runs_total",
        "Runs that ended, by agent, status and mode"
    );
    describe_histogram!(
        "leforge_run_duration_seconds",
        Unit::Seconds,
        "How long runs took, by agent and status"
    );
    describe_gauge!("leforge_runs_active", "Runs executing in this server now");
    describe_gauge!(
        "leforge_runs_queued",
        "Async runs waiting in the queue, across every server of the database"
    );
    describe_counter!(
        "leforge_tool_calls_total",
        "Tool calls, by ForgeHook, endpoint and outcome (ok or the error code)"
    );
    describe_histogram!(
        "leforge_tool_call_duration_seconds",
        Unit::Seconds,
        "Tool call duration, retries included"
    );
    describe_counter!("leforge_llm_requests_total", "Model requests, by outcome");
    describe_histogram!(
        "leforge_llm_request_duration_seconds",
        Unit::Seconds,
        "Model request duration, retries included"
    );
    describe_counter!(
        "leforge_llm_tokens_total",
        "Tokens, by direction (input or output)"
    );
    describe_counter!(
        "leforge_llm_retries_total",
        "Model request retries, by reason"
    );
    describe_counter!("leforge_hook_calls_total", "Hook script calls, by outcome");
    describe_counter!(
        "leforge_http_requests_total",
        "HTTP requests, by method, route template and status"
    );
    describe_histogram!(
        "leforge_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration until the response head"
    );
    describe_gauge!("leforge_store_pool_in_use", "Store connections in use");
    describe_gauge!("leforge_store_pool_idle", "Store connections open and idle");
    // Present from the first scrape, before any run.
    metrics::gauge!("leforge_runs_active").increment(0.0);
}

/// Marks the response with the route template that matched, for `record_http`, which runs
/// outside the router and so never sees `MatchedPath` itself.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// One finished request in the HTTP series; returns its route label.
pub fn record_http(method: &Method, response: &Response, took: Duration) -> String {
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    // Made-up methods are one value too.
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    metrics::counter!("leforge_http_requests_total",
        "method" => method, "route" => route.clone(),
        "status" => response.status().as_str().to_string())
    .increment(1);
    metrics::histogram!("leforge_http_request_duration_seconds",
        "method" => method, "route" => route.clone())
    .record(took.as_secs_f64());
    route
}

/// Prometheus metrics.
///
/// The text exposition format. It needs an admin key (a Bearer token, as a scrape config
/// sends it) unless the operator opened it with `--metrics-public`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String),
              (status = 401, description = "No admin key"),
              (status = 403, description = "Not an admin key")))]
pub async fn scrape(State(state): State<AppState>, admin: Result<Admin, ApiError>) -> Response {
    if !state.config.metrics_public {
        if let Err(e) = admin {
            return e.into_response();
        }
    }
    let Some(handle) = install() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "METRICS_UNAVAILABLE",
            "metrics are not recorded in this process",
        )
        .into_response();
    };
    // Read at the scrape rather than kept up to date: the queue is the database's, shared
    // with other servers, and one count per scrape is cheaper than one per run.
    match state
        .store
        .count_runs(leforge_core::RunStatus::Pending)
        .await
    {
        Ok(n) => metrics::gauge!("leforge_runs_queued").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count queued runs for /metrics"),
    }
    let pool = state.store.pool_stats();
    metrics::gauge!("leforge_store_pool_in_use").set(pool.in_use as f64);
    metrics::gauge!("leforge_store_pool_idle").set(pool.idle as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

// ---- Traces (OpenTelemetry over OTLP) and logs ----

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Whether an exporter is configured: without an endpoint nothing is exported, and no
/// OpenTelemetry layer is installed at all.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// What `init_tracing` started; `shutdown` exports the spans still buffered.
pub struct TracingGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TracingGuard {
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The batch processor's flush blocks until its task has exported: not on a worker.
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = provider.force_flush() {
                eprintln!("warning: flushing spans failed: {e}");
            }
            let _ = provider.shutdown();
        })
        .await;
    }
}

/// The exporter's HTTP client: the project's reqwest, under the `HttpClient` trait the OTLP
/// exporter sends through. The batch processor exports from a thread of its own, outside the
/// runtime that reqwest needs, so each export is spawned onto that runtime and awaited.
#[derive(Debug, Clone)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut builder = http::Response::builder().status(response.status());
            if let Some(headers) = builder.headers_mut() {
                *headers = response.headers().clone();
            }
            Ok::<_, opentelemetry_http::HttpError>(builder.body(response.bytes().await?)?)
        });
        sent.await?
    }
}

/// The tracer provider, when an endpoint is configured. The exporter reads the standard
/// variables itself (endpoint, headers, protocol); the SDK reads the sampler's.
fn tracer_provider() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the exporter needs a Tokio runtime: start tracing inside it".to_string())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
        .map(str::trim)
    {
        Err(_) | Ok("") | Ok("http/protobuf") => opentelemetry_otlp::Protocol::HttpBinary,
        Ok("http/json") => opentelemetry_otlp::Protocol::HttpJson,
        Ok(other) => {
            return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported: use http/protobuf or http/json"
        ))
        }
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_http_client(OtlpHttp { client, runtime })
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    // OTEL_SERVICE_NAME, when set, is the SDK's to read; this is only the default.
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name("leforge");
    }
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        // The SDK's batch processor queues an ended span without waking its export thread
        // until a batch is full or its delay is up. The async-runtime variant woke its task
        // for every span: a cross-thread wake-up per span, most of what export cost a step.
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Logs go to stderr; `LEFORGE_LOG` (or `RUST_LOG`) sets the filter and
/// `LEFORGE_LOG_FORMAT=json` switches to one JSON object per line for log shippers, with
/// `run_id` on every line about a run and `trace_id`/`span_id` when tracing is on. Spans
/// are exported over OTLP when an endpoint is configured. Call it inside the runtime: the
/// exporter runs on it.
pub fn init_tracing(default_filter: &str) -> TracingGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("LEFORGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_string());
    let json = std::env::var("LEFORGE_LOG_FORMAT").as_deref() == Ok("json");
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.event_format(JsonLines).boxed()
    } else {
        // Colour codes only for a person at a terminal, not in files or log shippers.
        fmt.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    let (provider, problem) = if otlp_configured() {
        match tracer_provider() {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    // Spans only, at info and above: events stay in the logs, where the filter governs them.
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        // No code locations, thread names, targets or busy/idle times: attributes nobody
        // asked for, and the last costs two clock reads at every poll of an instrumented
        // future. No context activation either: it attaches an OpenTelemetry context at
        // every poll, for code that reads `Context::current()`, which nothing here does (the
        // server reads a span's context from the span).
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("leforge"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(
                tracing_subscriber::filter::filter_fn(|meta| {
                    meta.is_span() && *meta.level() <= tracing::Level::INFO
                })
                // Tells the dispatcher that debug and trace callsites are never this layer's.
                .with_max_level_hint(tracing::level_filters::LevelFilter::INFO),
            )
    });
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    tracing_subscriber::registry()
        .with(otel)
        // Only info spans carry `run_id` and `request_id`. Unfiltered, this layer would make
        // every debug and trace callsite of every dependency live (sqlx then formats each
        // statement for a log line that the fmt layer's filter drops).
        .with(SpanFields.with_filter(tracing::level_filters::LevelFilter::INFO))
        .with(fmt.with_filter(EnvFilter::new(filter)))
        .init();
    if let Some(problem) = problem {
        tracing::error!("OpenTelemetry export is off: {problem}");
    }
    TracingGuard { provider }
}

/// Renames a span that has started (whose `otel.name` can no longer be recorded): the HTTP
/// span learns its route only once the router has matched it.
pub fn rename(span: &tracing::Span, name: String) {
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}

/// A `traceparent` as W3C Trace Context writes it: version 00, 32 and 16 lowercase hex
/// digits, not all zero, and two of flags.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// Makes `span` a child of the context in `traceparent` (a caller's, or one stored with a
/// run). Call it before the span is entered. Without tracing it does nothing.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|t| valid_traceparent(t)) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.trim().to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// The `traceparent` of the current span, when tracing is on and the span is sampled or
/// joined a caller's trace; else `fallback` (the caller's own, passed on unchanged).
pub fn current_traceparent(fallback: Option<&str>) -> Option<String> {
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    if span_context.is_valid() {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        if let Some(t) = carrier.remove("traceparent") {
            return Some(t);
        }
    }
    fallback
        .filter(|t| valid_traceparent(t))
        .map(|t| t.trim().to_string())
}

/// The fields of a span that every log line inside it repeats (`run_id`, `request_id`),
/// kept when the span is created.
#[derive(Debug, Default, Clone)]
struct Carried {
    run_id: Option<String>,
    request_id: Option<String>,
}

impl tracing::field::Visit for Carried {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.keep(field, value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.keep(field, format!("{value:?}"));
    }
}

impl Carried {
    fn keep(&mut self, field: &tracing::field::Field, value: String) {
        match field.name() {
            "run_id" => self.run_id = Some(value),
            "request_id" => self.request_id = Some(value),
            _ => {}
        }
    }
}

/// Keeps each span's carried fields in its extensions, for `JsonLines`.
struct SpanFields;

impl<S> Layer<S> for SpanFields
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut carried = Carried::default();
        attrs.record(&mut carried);
        if carried.run_id.is_some() || carried.request_id.is_some() {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(carried);
            }
        }
    }
}

/// One JSON object per line: time, level, target, the event's fields, the carried fields of
/// the spans around it, and the OpenTelemetry ids when tracing is on.
struct JsonLines;

/// An event's fields as JSON values.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut JsonFields(&mut line));
        if let Some(scope) = ctx.event_scope() {
            let dispatch = tracing::dispatcher::get_default(|d| d.clone());
            for span in scope {
                line.entry("span").or_insert_with(|| span.name().into());
                // The innermost span that is exported (a debug span is not). Read before
                // the span's extensions are borrowed below: this locks them too.
                if !line.contains_key("span_id") {
                    if let Some(cx) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
                    {
                        let sc = cx.span().span_context().clone();
                        if sc.is_valid() {
                            line.insert("trace_id".into(), sc.trace_id().to_string().into());
                            line.insert("span_id".into(), sc.span_id().to_string().into());
                        }
                    }
                }
                let ext = span.extensions();
                if let Some(carried) = ext.get::<Carried>() {
                    for (key, value) in [
                        ("run_id", &carried.run_id),
                        ("request_id", &carried.request_id),
                    ] {
                        if let Some(v) = value {
                            line.entry(key).or_insert_with(|| v.clone().into());
                        }
                    }
                }
            }
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// The GenAI conventions' name of a provider (`gen_ai.provider.name`): their well-known
/// values where one exists, else ours.
pub fn genai_provider(provider: leforge_core::Provider) -> &'static str {
    use leforge_core::Provider;
    match provider {
        Provider::Anthropic => "anthropic",
        Provider::Openai => "openai",
        Provider::Azure => "azure.ai.openai",
        Provider::Bedrock => "aws.bedrock",
        other => other.as_str(),
    }
}

/// The `invoke_agent {agent name}` span of one run, under the trace context stored with it.
pub fn run_span(agent: &leforge_core::Agent, run: &leforge_core::Run) -> tracing::Span {
    let span = tracing::info_span!(
        "invoke_agent",
        otel.name = %format!("invoke_agent {}", agent.name),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.id = %agent.id,
        gen_ai.agent.name = %agent.name,
        gen_ai.provider.name = genai_provider(agent.provider),
        gen_ai.request.model = %agent.model,
        run_id = %run.id,
        leforge.run.mode = run.mode.as_str(),
        leforge.run.status = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    set_parent(&span, run.trace_context.as_deref());
    span
}

/// The model client with a `chat {model}` span around each request (retries included), as
/// the GenAI conventions describe it. Content only with `capture_content()`.
pub struct TracedLlm<C>(pub C);

#[async_trait::async_trait]
impl<C: leforge_core::LlmClient> leforge_core::LlmClient for TracedLlm<C> {
    async fn chat(
        &self,
        request: leforge_core::llm::ChatRequest,
        deltas: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<leforge_core::llm::ChatResponse, leforge_core::LlmError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "chat",
            otel.name = %format!("chat {}", request.model),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = genai_provider(request.provider),
            gen_ai.request.model = %request.model,
            gen_ai.response.model = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        span.set_attribute("gen_ai.request.max_tokens", i64::from(request.max_tokens));
        if leforge_agent::observe::capture_content() {
            span.set_attribute("gen_ai.system_instructions", request.system.clone());
            span.set_attribute(
                "gen_ai.input.messages",
                serde_json::to_string(&request.messages).unwrap_or_default(),
            );
        }
        let answer = self.0.chat(request, deltas).instrument(span.clone()).await;
        match &answer {
            Ok(response) => {
                span.record("gen_ai.response.model", response.model.as_str());
                // Integer attributes (a recorded `u64` field may not become one).
                let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                span.set_attribute(
                    "gen_ai.usage.input_tokens",
                    tokens(response.usage.input_tokens),
                );
                span.set_attribute(
                    "gen_ai.usage.output_tokens",
                    tokens(response.usage.output_tokens),
                );
                span.set_attribute(
                    "gen_ai.response.finish_reasons",
                    opentelemetry::Value::Array(opentelemetry::Array::String(vec![finish_reason(
                        response.stop_reason,
                    )])),
                );
                if leforge_agent::observe::capture_content() {
                    span.set_attribute(
                        "gen_ai.output.messages",
                        serde_json::json!([{
                            "role": "assistant",
                            "text": response.text,
                            "tool_calls": response.tool_calls,
                        }])
                        .to_string(),
                    );
                }
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", e.kind());
            }
        }
        answer
    }
}

/// The conventions' finish reasons.
fn finish_reason(reason: leforge_core::llm::StopReason) -> opentelemetry::StringValue {
    use leforge_core::llm::StopReason;
    match reason {
        StopReason::End => "stop",
        StopReason::ToolCalls => "tool_calls",
        StopReason::MaxTokens => "length",
        StopReason::ContentFilter | StopReason::Refusal => "content_filter",
        StopReason::Other => "other",
    }
    .into()
}
