//! `leforge run <agent> "<instruction>"`: one run, from a shell or a script. Through a
//! running server (`--server`) or in this process, where the same router serves the
//! same requests without a listener, so both ways behave alike. The output JSON goes to
//! stdout; progress, errors and the error code go to stderr.

use std::io::{IsTerminal, Read, Write};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::config::{CliRunMode, RunArgs, Target};

/// Exit status of a run that did not complete, or of a request the server refused.
const FAILED: u8 = 1;
/// Exit status of a command line that cannot be carried out as written.
const USAGE: u8 = 2;

type Bytestream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// Where requests go: a server over HTTP, or the router of a state built here.
enum Transport {
    Remote {
        client: reqwest::Client,
        base: String,
        key: Option<String>,
    },
    Local {
        app: axum::Router,
    },
}

impl Transport {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytestream), String> {
        match self {
            Transport::Remote { client, base, key } => {
                let url = crate::forgehook_cli::endpoint(base, path);
                let mut req = client.request(method, &url);
                if let Some(key) = key {
                    req = req.bearer_auth(key);
                }
                if let Some(body) = body {
                    req = req.json(body);
                }
                let resp = req.send().await.map_err(|e| {
                    format!("cannot reach {base}: {}", leforge_core::error_chain(&e))
                })?;
                let status = StatusCode::from_u16(resp.status().as_u16())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Ok((
                    status,
                    Box::pin(resp.bytes_stream().map_err(|e| e.to_string())),
                ))
            }
            Transport::Local { app } => {
                let mut req = Request::builder()
                    .method(method)
                    .uri(format!("/api/v1{path}"))
                    .header("content-type", "application/json")
                    .body(match body {
                        Some(b) => Body::from(b.to_string()),
                        None => Body::empty(),
                    })
                    .map_err(|e| e.to_string())?;
                // Whoever can open the database is its administrator already.
                req.extensions_mut()
                    .insert(crate::auth::Authenticated(Ok(local_admin())));
                let resp = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let stream = resp
                    .into_body()
                    .into_data_stream()
                    .map_err(|e| e.to_string());
                Ok((status, Box::pin(stream)))
            }
        }
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let (status, stream) = self.send(method, path, body).await?;
        let bytes: Vec<Bytes> = stream.try_collect().await?;
        let bytes = bytes.concat();
        let value = serde_json::from_slice(&bytes).map_err(|_| {
            format!(
                "the server answered {status} without JSON: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )
        })?;
        Ok((status, value))
    }
}

/// The caller of an in-process run. Its runs record the nil key id as `triggered_by`: no
/// key was used, and none is created for it.
fn local_admin() -> leforge_core::Caller {
    leforge_core::Caller::Key {
        id: uuid::Uuid::nil(),
        scope: leforge_core::ApiKeyScope::Admin,
    }
}

pub async fn run(args: RunArgs) -> ExitCode {
    let data = match read_data(args.data.as_deref()) {
        Ok(data) => data,
        Err(message) => return usage(&message),
    };
    if args.target.server.is_none() && args.target.api_key.is_some() {
        return usage("--api-key needs --server (an in-process run uses the database directly)");
    }
    let transport = match transport(&args.target).await {
        Ok(t) => t,
        Err(message) => return failed("ERROR", &message),
    };
    let progress = Progress::new(args.progress || std::io::stdout().is_terminal());
    let mut body = json!({"input": args.instruction});
    if let Some(data) = data {
        body["data"] = data;
    }
    let agent =
        percent_encoding::utf8_percent_encode(&args.agent, percent_encoding::NON_ALPHANUMERIC);
    let path = format!("/agents/{agent}/run");
    let outcome = match args.mode {
        CliRunMode::Async => {
            body["mode"] = json!("async");
            run_async(&transport, &path, &body, &progress).await
        }
        // Progress comes from the run's live events; without it one JSON answer is enough.
        CliRunMode::Sync if progress.on => {
            body["stream"] = json!(true);
            run_streamed(&transport, &path, &body, &progress).await
        }
        CliRunMode::Sync => match transport.json(Method::POST, &path, Some(&body)).await {
            Ok((status, envelope)) => Ok(answer(status, &envelope)),
            Err(e) => Err(e),
        },
    };
    progress.clear();
    match outcome {
        Ok(Outcome::Completed(run)) => {
            let output = match &run["output"] {
                Value::Null => json!(run["output_text"].as_str().unwrap_or_default()),
                output => output.clone(),
            };
            let text = serde_json::to_string_pretty(&output).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error of the run.
            let _ = writeln!(out, "{text}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Ended { code, message, run }) => {
            if let Some(run) = run {
                eprintln!(
                    "run {} ended {}",
                    run["run_id"].as_str().unwrap_or("?"),
                    run["status"].as_str().unwrap_or("?")
                );
            }
            failed(&code, &message)
        }
        Err(message) => failed("ERROR", &message),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(USAGE)
}

fn failed(code: &str, message: &str) -> ExitCode {
    eprintln!("error {code}: {message}");
    ExitCode::from(FAILED)
}

/// `--data`: a file, or `-` for standard input; JSON either way.
fn read_data(path: Option<&std::path::Path>) -> Result<Option<Value>, String> {
    let Some(path) = path else { return Ok(None) };
    let (text, from) = if path == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read --data from standard input: {e}"))?;
        (text, "standard input".to_string())
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --data file {}: {e}", path.display()))?;
        (text, path.display().to_string())
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("--data from {from} is not JSON: {e}"))
}

async fn transport(target: &Target) -> Result<Transport, String> {
    if let Some(base) = &target.server {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| e.to_string())?;
        return Ok(Transport::Remote {
            client,
            base: base.clone(),
            key: target.api_key.clone(),
        });
    }
    // No rate limit on one's own runs: it would also authenticate the request itself, and
    // there is no key to authenticate.
    let state = crate::forgehook_cli::local_state(target, |c| c.rate_limit_per_minute = 0)
        .await
        .map_err(|e| format!("{e:#}"))?;
    crate::cli::load_forgehooks(&state)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(Transport::Local {
        app: crate::app::router(state),
    })
}

enum Outcome {
    Completed(Value),
    /// Not completed: the run's end (`run` is its view) or a refused request.
    Ended {
        code: String,
        message: String,
        run: Option<Value>,
    },
}

/// Reads a run's answer (the sync envelope, or a run view from events or polling).
fn answer(status: StatusCode, envelope: &Value) -> Outcome {
    if status.is_success() && envelope["success"] == true {
        return Outcome::Completed(envelope["data"].clone());
    }
    let error = &envelope["error"];
    Outcome::Ended {
        code: error["code"].as_str().unwrap_or("ERROR").to_string(),
        message: error["message"]
            .as_str()
            .unwrap_or("the server gave no reason")
            .to_string(),
        run: error["details"].get("run").cloned(),
    }
}

/// A terminal run view, as events and the runs route show it.
fn ended(run: Value) -> Outcome {
    if run["status"] == "completed" {
        return Outcome::Completed(run);
    }
    Outcome::Ended {
        code: run["error_code"]
            .as_str()
            .unwrap_or("RUN_FAILED")
            .to_string(),
        message: run["error_message"]
            .as_str()
            .unwrap_or("the run did not complete")
            .to_string(),
        run: Some(run),
    }
}

async fn run_streamed(
    transport: &Transport,
    path: &str,
    body: &Value,
    progress: &Progress,
) -> Result<Outcome, String> {
    use eventsource_stream::Eventsource;
    let (status, stream) = transport.send(Method::POST, path, Some(body)).await?;
    if !status.is_success() {
        let bytes: Vec<Bytes> = stream.try_collect().await?;
        let envelope: Value = serde_json::from_slice(&bytes.concat()).unwrap_or(Value::Null);
        return Ok(answer(status, &envelope));
    }
    let mut events = stream.eventsource();
    progress.thinking();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("the event stream broke: {e}"))?;
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match event.event.as_str() {
            "step_started" => progress.step_started(&data),
            "step_completed" => {
                progress.step_completed(&data);
                progress.thinking();
            }
            "run_completed" | "run_failed" => return Ok(ended(data)),
            _ => {}
        }
    }
    Err("the event stream ended before the run did".into())
}

async fn run_async(
    transport: &Transport,
    path: &str,
    body: &Value,
    progress: &Progress,
) -> Result<Outcome, String> {
    let (status, envelope) = transport.json(Method::POST, path, Some(body)).await?;
    if status != StatusCode::ACCEPTED {
        return Ok(answer(status, &envelope));
    }
    let run_id = envelope["data"]["run_id"]
        .as_str()
        .ok_or("the 202 named no run")?
        .to_string();
    progress.note(&format!("run {run_id} queued"));
    progress.thinking();
    let mut shown = 0;
    let mut delay = Duration::from_millis(100);
    loop {
        let (status, envelope) = transport
            .json(Method::GET, &format!("/runs/{run_id}"), None)
            .await?;
        if !status.is_success() {
            return Ok(answer(status, &envelope));
        }
        let run = &envelope["data"];
        if let Some(steps) = run["steps"].as_array() {
            for step in steps.iter().skip(shown) {
                progress.step_completed(step);
            }
            if steps.len() > shown {
                shown = steps.len();
                progress.thinking();
            }
        }
        if !matches!(run["status"].as_str(), Some("pending" | "running")) {
            return Ok(ended(run.clone()));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Progress on stderr: a line per step, and a spinner while the model thinks.
struct Progress {
    on: bool,
    /// Draws the spinner until the next line replaces it.
    spinner: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Erase the spinner line with an escape code only on a terminal.
    tty: bool,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress {
            on,
            spinner: std::sync::Mutex::new(None),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn stop_spinner(&self) {
        let running = self
            .spinner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = running {
            handle.abort();
            if self.tty {
                eprint!("\r\x1b[2K");
            }
        }
    }

    fn thinking(&self) {
        if !self.on || !self.tty {
            return;
        }
        self.stop_spinner();
        let handle = tokio::spawn(async {
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            loop {
                eprint!("\r{} the model is thinking", frames[i % frames.len()]);
                let _ = std::io::stderr().flush();
                i += 1;
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        });
        *self.spinner.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    fn note(&self, line: &str) {
        if self.on {
            self.stop_spinner();
            eprintln!("{line}");
        }
    }

    fn step_started(&self, step: &Value) {
        self.note(&format!(
            "step {} {}.{} …",
            step["step"],
            step["tool"].as_str().unwrap_or("?"),
            step["action"].as_str().unwrap_or("?")
        ));
    }

    fn step_completed(&self, step: &Value) {
        let outcome = match step["error"].as_str() {
            Some(error) => format!("error: {error}"),
            None => "ok".to_string(),
        };
        self.note(&format!(
            "step {} {}.{} {} ms {outcome}",
            step["step"],
            step["tool"].as_str().unwrap_or("?"),
            step["action"].as_str().unwrap_or("?"),
            step["duration_ms"]
        ));
    }

    fn clear(&self) {
        self.stop_spinner();
    }
}
