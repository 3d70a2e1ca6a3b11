//! Agent-loop benchmarks (a bench binary: `cargo bench -p leforge-server --bench runs`).
//!
//! 1. Per-step runtime overhead: runs of 20 tool steps against the fake provider answering
//!    at once, a built-in WASM tool (string-utils slugify), and the store
//!    (PostgreSQL when LEFORGE_BENCH_DATABASE_URL or LEFORGE_TEST_DATABASE_URL is set,
//!    SQLite otherwise). Reported per step: one model turn plus one tool call, persisted.
//! 2. 1,000 concurrent async runs of 3 steps with the fake provider answering in 200 ms,
//!    against the `leforge` binary as its own process: wall time to complete them all (the
//!    LLM-bound time is 4 turns x 200 ms), the server's peak RSS while the runs are live, and
//!    the CPU time of the server and of the bench process. Twice per store: on the server's
//!    first start with a fresh data directory, and on a restarted server. The fake provider
//!    answers from the raw request bodies and validates one in 50, so that it takes little
//!    of the cores the server is measured on (`FakeProvider::set_load_responder`).
//!
//! `LEFORGE_BENCH_ONLY=per_step|thousand` and `LEFORGE_BENCH_STORE=sqlite|postgres` narrow it;
//! `LEFORGE_BENCH_RUNS` sets how many runs the per-step figure measures (20).
//!
//! `LEFORGE_BENCH_TELEMETRY=off|metrics|on` measures what metrics and traces cost (issue 29):
//! `off` records metrics into a no-op recorder and exports no spans; `metrics` records into the
//! Prometheus recorder and exports no spans (a server with no OTLP endpoint); `on` does both
//! and exports every span over OTLP/HTTP to a receiver in this process. All three log through
//! the server's subscriber at `warn`. Unset: metrics on, no subscriber.

use std::time::{Duration, Instant};

use leforge_core::{NewRun, RunStatus};
use leforge_fake_provider::{FakeProvider, Script};
use leforge_server::config::{Config, ServerArgs};
use leforge_server::AppState;
use serde_json::json;

/// Tool results in an Anthropic request so far: the `tool_result` blocks of its messages.
/// Counted by walking the value, not by printing it: the fake provider shares the cores with
/// the server, and its time is not the runtime's.
fn tool_results(body: &serde_json::Value) -> usize {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .count()
}

/// The command name of a `/proc/<pid>/stat` file, and the seconds in the given fields after
/// it (0: the state). The name may hold spaces; the fields after its closing parenthesis do
/// not. Linux counts CPU time in USER_HZ, which is 100 on every Linux target Rust supports.
fn proc_stat(path: impl AsRef<std::path::Path>, fields: &[usize]) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (name, rest) = stat.rsplit_once(')')?;
    let after: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .iter()
        .filter_map(|i| after.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    let name = name.split_once('(').map_or(name, |(_, n)| n).to_string();
    Some((name, ticks / 100.0))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: &str) -> f64 {
    // utime and stime: the 14th and 15th fields.
    proc_stat(format!("/proc/{pid}/stat"), &[11, 12]).map_or(0.0, |(_, s)| s)
}

/// Nanoseconds of CPU the live threads of this process have run, from each thread's
/// schedstat: nanosecond resolution, where `stat`'s ticks are 10 ms. A thread that has exited
/// no longer counts; the per-step loop starts none that do.
fn threads_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU seconds used so far by every PostgreSQL process on this machine (the server's
/// backends, and the other processes of the cluster): their own time, and the time of their
/// children that have exited (the postmaster's, for backends that have gone).
fn postgres_cpu_seconds() -> f64 {
    // utime, stime, cutime, cstime: the 14th to 17th fields.
    const WITH_CHILDREN: [usize; 4] = [11, 12, 13, 14];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| proc_stat(entry.path().join("stat"), &WITH_CHILDREN))
        .filter(|(name, _)| name == "postgres")
        .map(|(_, seconds)| seconds)
        .sum()
}

/// A `/proc/<pid>/status` memory field (`VmRSS:`, `VmHWM:`) in MB.
fn read_rss(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn state(
    fake: &FakeProvider,
    postgres: bool,
) -> (
    AppState,
    leforge_store::testing::TestStore,
    tempfile::TempDir,
) {
    let db = if postgres {
        leforge_store::testing::postgres().await.expect("postgres")
    } else {
        leforge_store::testing::sqlite().await
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::resolve(&ServerArgs::default()).unwrap();
    config.data_dir = dir.path().to_path_buf();
    let state = AppState::build_with_llm(
        db.store.clone(),
        config,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
    )
    .unwrap();
    let builtins: Vec<(&str, &[u8])> = leforge_builtin_plugins::all()
        .iter()
        .filter(|b| b.id == "string-utils")
        .map(|b| (b.id, b.wasm))
        .collect();
    state.forgehooks.install_builtins(&builtins).await.unwrap();
    (state, db, dir)
}

async fn agent(state: &AppState, name: &str) -> uuid::Uuid {
    let new = leforge_core::NewAgent {
        name: name.into(),
        slug: leforge_core::agent::slugify(name),
        description: None,
        model: "claude-sonnet".into(),
        provider: leforge_core::Provider::Anthropic,
        system_prompt: "Slugify things.".into(),
        tools: vec!["string-utils".into()],
        config: leforge_core::AgentConfig {
            max_steps: 50,
            timeout_ms: 600_000,
            ..Default::default()
        },
        is_public: false,
        api_key_required: false,
        allowed_api_keys: vec![],
        output_schema: None,
        hooks: vec![],
        created_by: None,
    };
    state.store.create_agent(new).await.unwrap().id
}

async fn per_step(fake: &FakeProvider, postgres: bool) {
    const STEPS: usize = 20;
    fake.set_latency(Duration::ZERO);
    fake.set_responder(|body| {
        if tool_results(body) < STEPS {
            Script::tool_call("string-utils__slugify", json!({"text": "Hello Wide World"}))
        } else {
            Script::text("{\"done\": true}")
        }
    });
    let (state, db, _dir) = state(fake, postgres).await;
    let agent_id = agent(&state, "Stepper").await;
    // More runs for a profile whose samples should come from the loop, not from setup.
    let runs: usize = std::env::var("LEFORGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut per_step_ms = Vec::new();
    let mut overhead_ms = Vec::new();
    // This process's CPU over the measured runs, less the fake provider's handler time:
    // steadier than wall time, which each cross-thread wake-up on a shared machine moves.
    let (mut cpu_from, mut provider_from) = (0, Duration::ZERO);
    for i in 0..runs + 5 {
        if i == 5 {
            cpu_from = threads_cpu_ns();
            provider_from = fake.busy_time();
        }
        let run = state
            .store
            .create_run(NewRun::simple(agent_id, "go"))
            .await
            .unwrap();
        let busy_before = fake.busy_time();
        let started = Instant::now();
        let slot = state.runner.acquire_slot().await.expect("a free slot");
        let done = state.runner.spawn(run, slot).await.unwrap().unwrap();
        let wall = started.elapsed();
        // The fake provider's handler time stands in for a real provider's own time, so it is
        // not the runtime's overhead; everything else (HTTP client, loop, tool, store) is.
        let provider = fake.busy_time() - busy_before;
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(done.total_steps as usize, STEPS);
        if i >= 5 {
            per_step_ms.push(wall.as_secs_f64() * 1000.0 / STEPS as f64);
            overhead_ms.push((wall - provider).as_secs_f64() * 1000.0 / STEPS as f64);
        }
    }
    let cpu = Duration::from_nanos(threads_cpu_ns() - cpu_from)
        .saturating_sub(fake.busy_time() - provider_from);
    let cpu_per_step_ms = cpu.as_secs_f64() * 1000.0 / (runs * STEPS) as f64;
    per_step_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    overhead_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "per step ({}, {STEPS} steps/run, {runs} runs): wall p50 {:.3} ms, p90 {:.3} ms, min {:.3} ms; \
         runtime overhead (wall minus the fake provider's handler time) p50 {:.3} ms, p90 {:.3} ms; \
         process CPU per step (less the fake provider's handler time) {:.3} ms",
        db.backend,
        percentile(&per_step_ms, 0.5),
        percentile(&per_step_ms, 0.9),
        per_step_ms[0],
        percentile(&overhead_ms, 0.5),
        percentile(&overhead_ms, 0.9),
        cpu_per_step_ms,
    );
}

/// Runs the real `leforge` binary as its own process (so its RSS is the server's alone and
/// the fake provider's CPU is visible as what it is: a second process on the same 2 cores).
/// `restarted`: measure a server started before on the same data directory, rather than its
/// first start (which compiles the built-in ForgeHooks, and keeps some of the memory that took).
async fn thousand(fake: &FakeProvider, postgres: bool, restarted: bool) {
    const RUNS: usize = 1000;
    const KEY: &str = "bench-admin-key-0123456789";
    let latency = Duration::from_millis(200);
    fake.set_keep_requests(false);
    fake.set_latency(latency);
    // When each run's first model request reached the provider, by the run's input.
    let first_requests = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        chrono::DateTime<chrono::Utc>,
    >::new()));
    let seen = first_requests.clone();
    // The responder reads the raw body, and the fake provider checks the shape of one
    // request in 50: see `set_load_responder`. Every run must still end `completed`, which
    // takes four well-formed turns each.
    let tool_result = memchr::memmem::Finder::new(b"\"tool_result\"");
    let job = memchr::memmem::Finder::new(b"job ");
    fake.set_load_responder(50, move |body| {
        let results = tool_result.find_iter(body).count();
        if results == 0 {
            // The run's input, "job <i>", opens its first user message.
            if let Some(at) = job.find(body) {
                let digits = body[at + 4..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let input = String::from_utf8_lossy(&body[at..at + 4 + digits]).into_owned();
                seen.lock().unwrap().insert(input, chrono::Utc::now());
            }
        }
        if results < 3 {
            Script::tool_call("string-utils__slugify", json!({"text": "Concurrent Run"}))
        } else {
            Script::text("{\"done\": true}")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leforge"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env("LEFORGE_ADMIN_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-fake")
        .env("LEFORGE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let backend = if postgres { "postgres" } else { "sqlite" };
    let pg = if postgres {
        leforge_store::testing::postgres().await
    } else {
        None
    };
    if let Some(db) = &pg {
        cmd.env("DATABASE_URL", &db.url);
    } else {
        cmd.env_remove("DATABASE_URL");
    }
    let http = reqwest::Client::new();
    // A GET with the admin key, as JSON.
    let admin_get = |http: &reqwest::Client, url: String| {
        let request = http.get(url).header("x-api-key", KEY).send();
        async move {
            request
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let started_server = |cmd: &mut std::process::Command| {
        let child = cmd.spawn().unwrap();
        let http = http.clone();
        let health = format!("{base}/health");
        async move {
            for _ in 0..600 {
                if http.get(&health).send().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            child
        }
    };
    let mut child = started_server(&mut cmd).await;
    let start = if restarted {
        // The first start with a fresh data directory installs and compiles the built-in
        // ForgeHooks; every later start loads them precompiled. Measure a server in that
        // usual state: start it once, stop it, start it again.
        let _ = child.kill();
        let _ = child.wait();
        child = started_server(&mut cmd).await;
        "restarted"
    } else {
        "first start"
    };
    let r: serde_json::Value = http
        .post(format!("{base}/agents"))
        .header("x-api-key", KEY)
        .json(
            &json!({"name": "Crowd", "system_prompt": "Slugify.", "tools": ["string-utils"],
                      "config": {"timeout_ms": 600000}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    let before = fake.chat_count();
    let server_pid = child.id().to_string();
    // The peak so far is start-up's: a fresh data directory means compiling every built-in
    // ForgeHook. Report it, then reset the peak (Linux: 5 → clear_refs) so the figure below
    // is the peak while the 1,000 runs are live.
    let startup_peak = read_rss(&server_pid, "VmHWM:");
    let reset = std::fs::write(format!("/proc/{server_pid}/clear_refs"), "5").is_ok();
    let server_cpu_before = cpu_seconds(&server_pid);
    let bench_cpu_before = cpu_seconds("self");
    let postgres_cpu_before = postgres_cpu_seconds();
    let started = Instant::now();
    let started_wall = chrono::Utc::now();
    let posts: Vec<_> = (0..RUNS)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}/agents/crowd/run");
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("x-api-key", KEY)
                    .json(&json!({"input": format!("job {i}"), "mode": "async"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            })
        })
        .collect();
    for p in posts {
        p.await.unwrap();
    }
    let created = started.elapsed();
    // Checked every 5 ms: the wall time includes up to one interval past the real end.
    while fake.chat_count() - before < RUNS * 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(started.elapsed() < Duration::from_secs(600), "stuck");
    }
    // Wait until no run is pending or running. Each check is two one-row pages, so the
    // watching costs the server next to nothing; listing every completed run with its steps
    // each time (as this bench once did) cost the server about a tenth of its CPU in the
    // last, busiest moments.
    for _ in 0..12_000 {
        let mut open = 0;
        for status in ["pending", "running"] {
            let page = admin_get(&http, format!("{base}/runs?status={status}&limit=1")).await;
            open += page["count"].as_u64().unwrap_or(0);
        }
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    let server_cpu = cpu_seconds(&server_pid) - server_cpu_before;
    let bench_cpu = cpu_seconds("self") - bench_cpu_before;
    let postgres_cpu = postgres_cpu_seconds() - postgres_cpu_before;
    // Then, untimed, check that every run ended `completed`.
    let mut completed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/runs?status=completed&limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = admin_get(&http, url).await;
        completed += page["count"].as_u64().unwrap_or(0) as usize;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(completed, RUNS, "every run should end completed");
    let rss = |field: &str| read_rss(&server_pid, field);
    let bound = latency * 4;
    println!(
        "1000 concurrent async runs ({backend}, {start}, server as its own process): {completed} completed in {:.2} s \
         (LLM-bound {:.2} s, ratio {:.2}x; the 1000 POSTs took {:.2} s); server peak RSS {:.0} MB{}, now {:.0} MB \
         (start-up peak {:.0} MB); CPU: server {:.2} s ({:.2} ms per run), bench process (client + fake provider) {:.2} s{}",
        total.as_secs_f64(),
        bound.as_secs_f64(),
        total.as_secs_f64() / bound.as_secs_f64(),
        created.as_secs_f64(),
        rss("VmHWM:"),
        if reset { " during the runs" } else { " (since start-up: clear_refs refused)" },
        rss("VmRSS:"),
        startup_peak,
        server_cpu,
        server_cpu * 1000.0 / RUNS as f64,
        bench_cpu,
        if postgres {
            format!(", PostgreSQL {postgres_cpu:.2} s")
        } else {
            String::new()
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    let store = match &pg {
        Some(db) => db.store.clone(),
        None => leforge_store::connect(
            &leforge_store::sqlite_url_for_path(&dir.path().join("leforge.db")),
            leforge_store::Migrate::No,
        )
        .await
        .unwrap(),
    };
    let first_requests = first_requests.lock().unwrap().clone();
    timeline(store.as_ref(), started_wall, &first_requests).await;
}

/// Where each run's time went, read back from the store after the timed part: when runs were
/// created and claimed, and how long each of the four model turns took as the server saw it
/// (from one step's end, or the run's start, to the next step's start). A turn's excess over
/// the fake provider's 200 ms is queueing for CPU, in the server or in the fake provider.
async fn timeline(
    store: &dyn leforge_core::Store,
    t0: chrono::DateTime<chrono::Utc>,
    first_requests: &std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
) {
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let page_request =
            leforge_core::PageRequest::from_params(Some(200), cursor.as_deref()).unwrap();
        let page = store
            .list_runs(leforge_core::RunFilter::default(), page_request)
            .await
            .unwrap();
        ids.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let (mut created, mut waited, mut done) = (Vec::new(), Vec::new(), Vec::new());
    let mut to_provider = Vec::new();
    let mut turns: [Vec<f64>; 4] = Default::default();
    for id in ids {
        let run = store.get_run(id).await.unwrap().unwrap();
        let (Some(start), Some(end)) = (run.started_at, run.completed_at) else {
            continue;
        };
        created.push(ms(run.created_at - t0));
        waited.push(ms(start - run.created_at));
        if let Some(at) = first_requests.get(&run.input_text) {
            to_provider.push(ms(*at - start));
        }
        done.push(ms(end - t0));
        let mut from = start;
        for (i, step) in run.steps.iter().take(3).enumerate() {
            turns[i].push(ms(step.started_at - from));
            from = step.started_at + chrono::TimeDelta::milliseconds(step.duration_ms);
        }
        turns[3].push(ms(end - from));
    }
    let show = |name: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return String::new();
        }
        format!(
            "{name} p50 {:.0} p90 {:.0} max {:.0}",
            percentile(v, 0.5),
            percentile(v, 0.9),
            v[v.len() - 1]
        )
    };
    println!(
        "  timeline (ms from the first POST): {}; {}; {}",
        show("created", &mut created),
        show("claim wait", &mut waited),
        show("completed", &mut done)
    );
    let turns: Vec<String> = turns
        .iter_mut()
        .enumerate()
        .map(|(i, t)| show(&format!("turn {}", i + 1), t))
        .collect();
    println!("  turns as the server saw them (ms): {}", turns.join("; "));
    println!(
        "  from a run's start to its first request reaching the provider (ms): {}",
        show("", &mut to_provider)
    );
}

// The same allocator as the `leforge` binary: the per-step bench runs the server in-process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the `leforge` binary does, for the in-process per-step bench.
    leforge_server::cli::quiet_library_backtraces();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let telemetry = std::env::var("LEFORGE_BENCH_TELEMETRY").unwrap_or_default();
    let tracing = match telemetry.as_str() {
        "" => None,
        "off" => {
            // Taken first, the no-op recorder stays: the server's install then finds it.
            metrics::set_global_recorder(metrics::NoopRecorder).expect("first recorder");
            let _entered = rt.enter();
            Some(leforge_server::telemetry::init_tracing("warn"))
        }
        "metrics" => {
            let _entered = rt.enter();
            Some(leforge_server::telemetry::init_tracing("warn"))
        }
        "on" => {
            let receiver = rt.block_on(otlp_sink());
            std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver);
            let _entered = rt.enter();
            Some(leforge_server::telemetry::init_tracing("warn"))
        }
        other => panic!("LEFORGE_BENCH_TELEMETRY must be off, metrics or on, not {other}"),
    };
    rt.block_on(async {
        // PostgreSQL too when LEFORGE_TEST_DATABASE_URL points at a server.
        let postgres = std::env::var("LEFORGE_TEST_DATABASE_URL").is_ok();
        // For iterating on one figure: LEFORGE_BENCH_ONLY=per_step|thousand and
        // LEFORGE_BENCH_STORE=sqlite|postgres narrow what runs; unset, everything does.
        let only = std::env::var("LEFORGE_BENCH_ONLY").unwrap_or_default();
        let store = std::env::var("LEFORGE_BENCH_STORE").unwrap_or_default();
        for pg in [false, true] {
            if pg && !postgres {
                continue;
            }
            if !store.is_empty() && store != if pg { "postgres" } else { "sqlite" } {
                continue;
            }
            if only.is_empty() || only == "per_step" {
                let fake = FakeProvider::start().await;
                per_step(&fake, pg).await;
            }
            if only.is_empty() || only == "thousand" {
                for restarted in [false, true] {
                    let fake = FakeProvider::start().await;
                    thousand(&fake, pg, restarted).await;
                }
            }
        }
    });
    if let Some(tracing) = tracing {
        rt.block_on(tracing.shutdown());
        println!(
            "telemetry {telemetry}: spans exported {}",
            SPANS_RECEIVED.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

/// Export requests an OTLP receiver in this process took.
static SPANS_RECEIVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An OTLP/HTTP receiver that accepts every export (as a collector would, without looking
/// inside); returns its base URL.
async fn otlp_sink() -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|body: axum::body::Bytes| async move {
            use prost::Message;
            let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                .expect("an OTLP export");
            let spans: usize = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            SPANS_RECEIVED.fetch_add(spans, std::sync::atomic::Ordering::Relaxed);
            [("content-type", "application/x-protobuf")]
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
