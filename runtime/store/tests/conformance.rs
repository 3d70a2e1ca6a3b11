//! The Store conformance suite: every test runs against each available back end (SQLite
//! always; PostgreSQL when LEFORGE_TEST_DATABASE_URL is set, which CI requires).

use leforge_core::agent::slugify;
use leforge_core::{
    AgentConfig, AgentPatch, AgentVisibility, ApiKeyScope, NewAgent, NewApiKey, NewRun,
    PageRequest, Provider, RunFilter, RunStatus, RunStep, RunUpdate, Store, StoreError,
};
use leforge_store::testing;
use serde_json::json;
use uuid::Uuid;

fn new_agent(name: &str) -> NewAgent {
    NewAgent {
        name: name.to_string(),
        slug: slugify(name),
        description: Some("cleans CSV files".into()),
        model: "claude-sonnet".into(),
        provider: Provider::Anthropic,
        system_prompt: "You clean data.".into(),
        tools: vec!["data-transform".into(), "date-utils".into()],
        config: AgentConfig {
            max_steps: 5,
            ..AgentConfig::default()
        },
        is_public: false,
        api_key_required: false,
        allowed_api_keys: vec![],
        output_schema: None,
        hooks: vec![],
        created_by: Some("test".into()),
    }
}

fn step(n: i32, tool: &str) -> RunStep {
    RunStep {
        step: n,
        tool: tool.into(),
        action: "csv_to_json".into(),
        input: json!({"csv": "a,b\n1,2"}),
        output: Some(json!({"rows": [{"a": 1, "b": 2}]})),
        error: None,
        duration_ms: 12,
        started_at: chrono::Utc::now(),
    }
}

async fn each_backend<F, Fut>(f: F)
where
    F: Fn(std::sync::Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for t in testing::all().await {
        eprintln!("-- backend {}", t.backend);
        assert_eq!(t.store.backend(), t.backend);
        t.store.ping().await.expect("ping");
        f(t.store.clone()).await;
    }
}

#[tokio::test]
async fn agent_round_trips_by_id_and_slug() {
    each_backend(|store| async move {
        let created = store.create_agent(new_agent("CSV Cleaner")).await.unwrap();
        assert_eq!(created.slug, "csv-cleaner");
        assert_eq!(created.config.max_steps, 5);
        let by_id = store
            .find_agent(&created.id.to_string())
            .await
            .unwrap()
            .unwrap();
        let by_slug = store.find_agent("csv-cleaner").await.unwrap().unwrap();
        assert_eq!(by_id, created);
        assert_eq!(by_slug, created);
        assert!(store.find_agent("nope").await.unwrap().is_none());
        assert!(store
            .find_agent(&Uuid::new_v4().to_string())
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn duplicate_name_or_slug_is_a_conflict_naming_the_field() {
    each_backend(|store| async move {
        store.create_agent(new_agent("Report Bot")).await.unwrap();
        match store.create_agent(new_agent("Report Bot")).await {
            Err(StoreError::Conflict { field, .. }) => assert!(field == "name" || field == "slug"),
            other => panic!("expected conflict, got {other:?}"),
        }
        // A different name that slugs the same still clashes, on the slug.
        match store.create_agent(new_agent("report  bot!")).await {
            Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "slug"),
            other => panic!("expected slug conflict, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn soft_delete_hides_the_agent_and_frees_its_name() {
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Temp Agent")).await.unwrap();
        let run = store.create_run(NewRun::simple(a.id, "hi")).await.unwrap();
        store.delete_agent(a.id).await.unwrap();
        assert!(store.find_agent(&a.id.to_string()).await.unwrap().is_none());
        assert!(store.find_agent("temp-agent").await.unwrap().is_none());
        assert!(matches!(
            store.delete_agent(a.id).await,
            Err(StoreError::NotFound { .. })
        ));
        // The run keeps existing for its history.
        assert!(store.get_run(run.id).await.unwrap().is_some());
        let again = store.create_agent(new_agent("Temp Agent")).await.unwrap();
        assert_ne!(again.id, a.id);
    })
    .await;
}

#[tokio::test]
async fn update_applies_patch_and_detects_clashes() {
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Alpha")).await.unwrap();
        store.create_agent(new_agent("Beta")).await.unwrap();
        let updated = store
            .update_agent(
                a.id,
                AgentPatch {
                    name: Some("Alpha Two".into()),
                    slug: Some("alpha-two".into()),
                    description: Some(None),
                    tools: Some(vec!["json-utils".into()]),
                    is_public: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.name, "Alpha Two");
        assert_eq!(updated.slug, "alpha-two");
        assert_eq!(updated.description, None);
        assert_eq!(updated.tools, vec!["json-utils".to_string()]);
        assert!(updated.is_public);
        assert!(updated.updated_at >= a.updated_at);
        assert_eq!(
            store.find_agent("alpha-two").await.unwrap().unwrap(),
            updated
        );
        let clash = store
            .update_agent(
                a.id,
                AgentPatch {
                    name: Some("Beta".into()),
                    slug: Some("beta".into()),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(clash, Err(StoreError::Conflict { .. })),
            "{clash:?}"
        );
        assert!(matches!(
            store
                .update_agent(Uuid::new_v4(), AgentPatch::default())
                .await,
            Err(StoreError::NotFound { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn listing_respects_visibility_and_pages_without_gaps() {
    each_backend(|store| async move {
        let key = Uuid::new_v4();
        let other_key = Uuid::new_v4();
        let mut public = new_agent("Public One");
        public.is_public = true;
        let public = store.create_agent(public).await.unwrap();
        let open = store.create_agent(new_agent("Open To Keys")).await.unwrap();
        let mut mine = new_agent("Only Mine");
        mine.allowed_api_keys = vec![key];
        let mine = store.create_agent(mine).await.unwrap();
        let mut theirs = new_agent("Only Theirs");
        theirs.allowed_api_keys = vec![other_key];
        let theirs = store.create_agent(theirs).await.unwrap();

        let ids = |page: leforge_core::Page<leforge_core::Agent>| {
            page.items.into_iter().map(|a| a.id).collect::<Vec<_>>()
        };
        let all = ids(store
            .list_agents(AgentVisibility::All, PageRequest::default())
            .await
            .unwrap());
        assert_eq!(
            all,
            vec![theirs.id, mine.id, open.id, public.id],
            "newest first"
        );
        let anon = ids(store
            .list_agents(AgentVisibility::PublicOnly, PageRequest::default())
            .await
            .unwrap());
        assert_eq!(anon, vec![public.id]);
        let by_key = ids(store
            .list_agents(AgentVisibility::RunnableBy(key), PageRequest::default())
            .await
            .unwrap());
        assert_eq!(by_key, vec![mine.id, open.id, public.id]);

        let mut seen = Vec::new();
        let mut req = PageRequest {
            limit: 3,
            after: None,
        };
        loop {
            let page = store
                .list_agents(AgentVisibility::All, req.clone())
                .await
                .unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().map(|a| a.id));
            match page.next_cursor {
                Some(c) => req = PageRequest::from_params(Some(3), Some(&c)).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, all);
    })
    .await;
}

#[tokio::test]
async fn runs_keep_steps_in_order_and_filter() {
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Runner")).await.unwrap();
        let b = store.create_agent(new_agent("Other")).await.unwrap();
        let new_run = |agent_id, by: Option<&str>| NewRun {
            input_data: Some(json!({"csv": "x"})),
            triggered_by: by.map(str::to_string),
            ip_address: Some("127.0.0.1".into()),
            user_agent: Some("n8n".into()),
            ..NewRun::simple(agent_id, "Clean this CSV")
        };
        let r1 = store
            .create_run(new_run(a.id, Some("key-1")))
            .await
            .unwrap();
        assert_eq!(r1.status, RunStatus::Pending);
        assert_eq!(r1.input_data, Some(json!({"csv": "x"})));
        let r2 = store
            .create_run(new_run(a.id, Some("key-2")))
            .await
            .unwrap();
        let r3 = store.create_run(new_run(b.id, None)).await.unwrap();
        assert!(matches!(
            store.create_run(new_run(Uuid::new_v4(), None)).await,
            Err(StoreError::NotFound { .. })
        ));

        store
            .append_step(r1.id, step(2, "date-utils"))
            .await
            .unwrap();
        store
            .append_step(r1.id, step(1, "data-transform"))
            .await
            .unwrap();
        assert!(matches!(
            store.append_step(r1.id, step(1, "again")).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            store.append_step(Uuid::new_v4(), step(1, "x")).await,
            Err(StoreError::NotFound { .. })
        ));
        // A failed step write leaves nothing behind: not a half-written step, not a
        // transaction left open on the connection for the next writer (on SQLite the step
        // and its counters go as one multi-statement command).
        assert!(matches!(
            store
                .append_step_with_progress(Uuid::new_v4(), step(1, "x"), 1, 1)
                .await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store
                .append_step_with_progress(r1.id, step(2, "duplicate"), 999, 999)
                .await,
            Err(StoreError::Conflict { .. })
        ));
        store
            .append_step_with_progress(r1.id, step(3, "formula-engine"), 120, 30)
            .await
            .unwrap();
        let got = store.get_run(r1.id).await.unwrap().unwrap();
        assert_eq!(
            (got.total_steps, got.tokens_input, got.tokens_output),
            (3, 120, 30)
        );
        let tools: Vec<_> = got
            .steps
            .iter()
            .map(|s| (s.step, s.tool.as_str()))
            .collect();
        assert_eq!(
            tools,
            vec![
                (1, "data-transform"),
                (2, "date-utils"),
                (3, "formula-engine")
            ]
        );
        assert_eq!(
            got.steps[0].output,
            Some(json!({"rows": [{"a": 1, "b": 2}]}))
        );

        let done = store
            .update_run(
                r2.id,
                RunUpdate {
                    status: Some(RunStatus::Completed),
                    output: Some(json!({"West": 2700})),
                    output_text: Some("{\"West\": 2700}".into()),
                    total_steps: Some(3),
                    tokens_input: Some(100),
                    tokens_output: Some(20),
                    duration_ms: Some(1500),
                    completed_at: Some(chrono::Utc::now()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(done.output, Some(json!({"West": 2700})));
        assert_eq!(done.tokens_input, 100);
        // Terminal is final.
        assert!(matches!(
            store
                .update_run(
                    r2.id,
                    RunUpdate {
                        status: Some(RunStatus::Failed),
                        ..Default::default()
                    }
                )
                .await,
            Err(StoreError::InvalidState(_))
        ));
        // The fire-and-forget form: same rules, nothing read back.
        let until = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        store
            .apply_run_update(
                r3.id,
                RunUpdate {
                    status: Some(RunStatus::Running),
                    lease: Some(("worker-a".into(), until)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let running = store.get_run(r3.id).await.unwrap().unwrap();
        assert_eq!(running.status, RunStatus::Running);
        assert_eq!(running.worker.as_deref(), Some("worker-a"));
        assert!(matches!(
            store
                .apply_run_update(
                    r2.id,
                    RunUpdate {
                        status: Some(RunStatus::Running),
                        ..Default::default()
                    }
                )
                .await,
            Err(StoreError::InvalidState(_))
        ));
        assert!(matches!(
            store
                .apply_run_update(Uuid::new_v4(), RunUpdate::default())
                .await,
            Err(StoreError::NotFound { .. })
        ));
        store
            .update_run(
                r3.id,
                RunUpdate {
                    status: Some(RunStatus::Pending),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        let list = |filter: RunFilter| {
            let store = store.clone();
            async move {
                store
                    .list_runs(filter, PageRequest::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list(RunFilter::default()).await, vec![r3.id, r2.id, r1.id]);
        assert_eq!(
            list(RunFilter {
                agent_id: Some(a.id),
                ..Default::default()
            })
            .await,
            vec![r2.id, r1.id]
        );
        assert_eq!(
            list(RunFilter {
                status: Some(RunStatus::Completed),
                ..Default::default()
            })
            .await,
            vec![r2.id]
        );
        assert_eq!(
            list(RunFilter {
                triggered_by: Some("key-1".into()),
                ..Default::default()
            })
            .await,
            vec![r1.id]
        );
        let listed = store
            .list_runs(
                RunFilter {
                    agent_id: Some(a.id),
                    ..Default::default()
                },
                PageRequest::default(),
            )
            .await
            .unwrap();
        assert_eq!(listed.items[1].steps.len(), 3, "lists carry their steps");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_steps_of_one_run_are_all_counted() {
    // Parallel tool calls of one turn write their steps concurrently; the live step count
    // must not lose one (PostgreSQL writes a step in one statement, see sql_store.rs).
    each_backend(|store| async move {
        let agent = store.create_agent(new_agent("Parallel")).await.unwrap();
        let run = store
            .create_run(NewRun::simple(agent.id, "in parallel"))
            .await
            .unwrap();
        let writes: Vec<_> = (1..=12)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append_step_with_progress(run.id, step(n, "string-utils"), 10, 5)
                        .await
                })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let got = store.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(got.steps.len(), 12);
        assert_eq!(got.total_steps, 12);
        assert_eq!((got.tokens_input, got.tokens_output), (10, 5));
    })
    .await;
}

/// SQLite: one writer connection, so writers queue for it instead of sleeping in SQLite's
/// busy handler; many concurrent writes of different runs all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_through_one_connection_and_concurrent_writers_all_land() {
    let (db, sqlite) = direct_sqlite().await;
    assert!(sqlite.writes_through_dedicated_connection());
    assert!(
        sqlite.read_connections().is_some_and(|n| n > 1),
        "reads stay parallel, on connections of their own"
    );
    let store = db.store.clone();
    let agent = store.create_agent(new_agent("Crowd")).await.unwrap();
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let run = store
                    .create_run(NewRun::simple(agent.id, format!("job {i}")))
                    .await?;
                store
                    .append_step_with_progress(run.id, step(1, "string-utils"), 3, 2)
                    .await?;
                Ok::<_, StoreError>(run.id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for w in writers {
        ids.push(w.await.unwrap().unwrap());
    }
    // Ten times as many reads at once as there are read connections: they take turns.
    let readers: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move { store.get_run(id).await })
        })
        .collect();
    for r in readers {
        let run = r.await.unwrap().unwrap().unwrap();
        assert_eq!((run.total_steps, run.steps.len()), (1, 1));
    }
}

/// A SQLite test database, and the concrete store on it (for what only SQLite has: its
/// writer's queue and group counters). The database lives as long as the first value.
async fn direct_sqlite() -> (
    testing::TestStore,
    std::sync::Arc<leforge_store::SqliteStore>,
) {
    let db = testing::sqlite().await;
    let sqlite = leforge_store::SqliteStore::connect(&db.url, leforge_store::Migrate::No)
        .await
        .unwrap();
    (db, std::sync::Arc::new(sqlite))
}

/// A PostgreSQL test database (when configured), and the concrete store on it (for its
/// grouped writers' queues and counters). The database lives as long as the first value.
async fn direct_postgres() -> Option<(testing::TestStore, std::sync::Arc<leforge_store::PgStore>)> {
    let db = testing::postgres().await?;
    let pg = leforge_store::PgStore::connect(&db.url, leforge_store::Migrate::No)
        .await
        .unwrap();
    Some((db, std::sync::Arc::new(pg)))
}

/// A store whose grouped writes can be watched while they wait for their writer.
trait Queued {
    fn queued(&self) -> usize;
}

impl Queued for leforge_store::SqliteStore {
    fn queued(&self) -> usize {
        self.writes_queued()
    }
}

impl Queued for leforge_store::PgStore {
    fn queued(&self) -> usize {
        self.writes_queued()
    }
}

impl<T: Queued> Queued for std::sync::Arc<T> {
    fn queued(&self) -> usize {
        (**self).queued()
    }
}

/// Polls until `n` writes wait for the store's writer.
async fn until_queued(store: &impl Queued, n: usize) {
    until_counted(n, || store.queued(), "writes queued").await;
}

/// What each spawned store call returned, in spawning order.
async fn answers<T>(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<Result<T, StoreError>>>,
) -> Vec<T> {
    let done = futures::future::join_all(tasks).await;
    done.into_iter().map(|t| t.unwrap().unwrap()).collect()
}

/// Polls until `count` says `n`.
async fn until_counted(n: usize, count: impl Fn() -> usize, what: &str) {
    for _ in 0..2000 {
        if count() == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{} {what}, expected {n}", count());
}

/// `n` new runs of `agent_id`, with the inputs `job 0`, `job 1`, …
async fn new_runs(store: &dyn Store, agent_id: Uuid, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let run = store
            .create_run(NewRun::simple(agent_id, format!("job {i}")))
            .await
            .unwrap();
        ids.push(run.id);
    }
    ids
}

/// In a failed step group, a step with a taken number conflicts and a step of a missing run
/// is not found: each caller hears its own outcome.
async fn assert_taken_and_missing(
    taken: tokio::task::JoinHandle<Result<(), StoreError>>,
    missing: tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    match taken.await.unwrap() {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "step"),
        other => panic!("a taken step number should conflict, got {other:?}"),
    }
    assert!(
        matches!(
            missing.await.unwrap(),
            Err(StoreError::NotFound { entity: "run" })
        ),
        "a step of a missing run"
    );
}

/// SQLite: steps queued while the writer is busy commit as one group (one transaction); a
/// caller that gives up does not take the group down; and when one step of a group fails,
/// every other step still lands and every caller hears its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_groups_queued_steps_and_each_caller_gets_its_own_outcome() {
    let (_db, sqlite) = direct_sqlite().await;
    let agent = sqlite.create_agent(new_agent("Grouped")).await.unwrap();
    let runs = new_runs(&*sqlite, agent.id, 6).await;
    let append = |run_id: Uuid, n: i32| {
        let sqlite = sqlite.clone();
        tokio::spawn(async move {
            sqlite
                .append_step_with_progress(run_id, step(n, "string-utils"), 10, 1)
                .await
        })
    };

    // Two steps of each run, queued while the writer is held; one caller gives up.
    let held = sqlite.hold_writer().await.unwrap();
    let groups = sqlite.step_groups_committed();
    let mut tasks: Vec<_> = runs
        .iter()
        .flat_map(|&id| [append(id, 1), append(id, 2)])
        .collect();
    until_queued(&sqlite, 12).await;
    tasks.pop().unwrap().abort();
    assert_eq!(
        sqlite.step_groups_committed(),
        groups,
        "nothing is written while held"
    );
    drop(held);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The count goes up before any caller hears back.
    assert_eq!(
        sqlite.step_groups_committed(),
        groups + 1,
        "one group, one commit"
    );
    for id in &runs {
        let run = sqlite.get_run(*id).await.unwrap().unwrap();
        let numbers: Vec<i32> = run.steps.iter().map(|s| s.step).collect();
        // The abandoned caller's step landed too: it was written with its group.
        assert_eq!((run.total_steps, numbers), (2, vec![1, 2]), "run {id}");
        assert_eq!((run.tokens_input, run.tokens_output), (10, 1));
    }

    // A group holding a taken step number and a missing run: those two fail, alone.
    let held = sqlite.hold_writer().await.unwrap();
    let valid: Vec<_> = runs.iter().map(|&id| append(id, 3)).collect();
    let taken = append(runs[0], 1);
    let missing = append(Uuid::new_v4(), 1);
    until_queued(&sqlite, 8).await;
    drop(held);
    for t in valid {
        t.await.unwrap().unwrap();
    }
    assert_taken_and_missing(taken, missing).await;
    for id in &runs {
        let run = sqlite.get_run(*id).await.unwrap().unwrap();
        let numbers: Vec<i32> = run.steps.iter().map(|s| s.step).collect();
        assert_eq!((run.total_steps, numbers), (3, vec![1, 2, 3]), "run {id}");
        assert_eq!(run.steps[0].tool, "string-utils");
    }
}

/// In the grouped creation tests, every odd job starts at once: a group mixes both kinds.
fn started_job(input: &str) -> Option<leforge_core::RunStart> {
    let n: usize = input.strip_prefix("job ")?.parse().ok()?;
    (n % 2 == 1).then(|| leforge_core::RunStart {
        owner: "grouped-worker".into(),
        lease_until: chrono::Utc::now() + chrono::TimeDelta::seconds(30),
    })
}

fn assert_started_as_asked(run: &leforge_core::Run, i: usize) {
    if i % 2 == 1 {
        assert_eq!(run.status, RunStatus::Running, "job {i}");
        assert_eq!(run.started_at, Some(run.created_at));
        assert_eq!(run.worker.as_deref(), Some("grouped-worker"));
    } else {
        assert_eq!(run.status, RunStatus::Pending, "job {i}");
        assert_eq!((run.started_at, run.worker.as_deref()), (None, None));
    }
}

/// SQLite: runs created, and runs updated, while the writer is busy commit as groups, one
/// transaction per kind; each caller gets its own run back or its own outcome, including an
/// idempotency key taken within the same group, a terminal run, and a missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_groups_run_creations_and_updates_with_outcomes_of_their_own() {
    let (_db, sqlite) = direct_sqlite().await;
    let agent = sqlite
        .create_agent(new_agent("Grouped runs"))
        .await
        .unwrap();
    let create = |input: String, key: Option<&str>| {
        let sqlite = sqlite.clone();
        let mut new = NewRun::simple(agent.id, input);
        new.start = started_job(&new.input_text);
        new.idempotency_key = key.map(str::to_string);
        new.triggered_by = Some("key-1".into());
        new.limits = Some(serde_json::json!({"max_steps": 3}));
        tokio::spawn(async move { sqlite.create_run(new).await })
    };

    let held = sqlite.hold_writer().await.unwrap();
    let groups = sqlite.run_groups_committed();
    let plain: Vec<_> = (0..5).map(|i| create(format!("job {i}"), None)).collect();
    until_queued(&sqlite, 5).await;
    drop(held);
    let mut ids = std::collections::HashSet::new();
    for (i, t) in plain.into_iter().enumerate() {
        let run = t.await.unwrap().unwrap();
        assert_eq!(run.input_text, format!("job {i}"));
        assert_started_as_asked(&run, i);
        assert_eq!(run.agent_id, agent.id);
        assert_eq!(run.triggered_by.as_deref(), Some("key-1"));
        assert_eq!(run.limits, Some(serde_json::json!({"max_steps": 3})));
        assert!(run.steps.is_empty() && run.total_steps == 0);
        // What the caller got back is what was stored.
        let stored = sqlite.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(stored.created_at, run.created_at);
        assert_eq!(stored.input_text, run.input_text);
        ids.insert(run.id);
    }
    assert_eq!(ids.len(), 5, "every run has an id of its own");
    assert_eq!(
        sqlite.run_groups_committed(),
        groups + 1,
        "one group, one commit"
    );

    // One idempotency key twice in one group: the group fails on the unique index, and is
    // written again one run at a time, so only the second use of the key fails.
    let held = sqlite.hold_writer().await.unwrap();
    let first = create("keyed".into(), Some("same-key"));
    until_queued(&sqlite, 1).await;
    let second = create("keyed".into(), Some("same-key"));
    until_queued(&sqlite, 2).await;
    let bystander = create("bystander".into(), None);
    until_queued(&sqlite, 3).await;
    drop(held);
    let winner = first.await.unwrap().unwrap();
    assert_eq!(winner.idempotency_key.as_deref(), Some("same-key"));
    match second.await.unwrap() {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "idempotency_key"),
        other => panic!("the second use of a key should conflict, got {other:?}"),
    }
    let bystander = bystander.await.unwrap().unwrap();
    assert_eq!(
        sqlite
            .get_run(bystander.id)
            .await
            .unwrap()
            .unwrap()
            .input_text,
        "bystander"
    );

    // Updates: each to its own run, one to a run already terminal, one to a missing run.
    let ended = ids.iter().next().copied().unwrap();
    sqlite
        .apply_run_update(
            ended,
            RunUpdate {
                status: Some(RunStatus::Cancelled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let update = |id: Uuid, status: RunStatus, steps: i32| {
        let sqlite = sqlite.clone();
        tokio::spawn(async move {
            sqlite
                .apply_run_update(
                    id,
                    RunUpdate {
                        status: Some(status),
                        output_text: Some(format!("done {steps}")),
                        total_steps: Some(steps),
                        completed_at: Some(chrono::Utc::now()),
                        ..Default::default()
                    },
                )
                .await
        })
    };
    let held = sqlite.hold_writer().await.unwrap();
    let groups = sqlite.run_groups_committed();
    let others: Vec<Uuid> = ids.iter().copied().filter(|id| *id != ended).collect();
    let mut tasks = Vec::new();
    for (i, id) in others.iter().enumerate() {
        tasks.push(update(*id, RunStatus::Completed, i as i32 + 1));
    }
    let late = update(ended, RunStatus::Completed, 9);
    let missing = update(Uuid::new_v4(), RunStatus::Completed, 9);
    // A metrics-only update (no status) applies to a terminal run too: a worker records
    // what it measured after a cancel ended the run.
    let metrics = {
        let sqlite = sqlite.clone();
        tokio::spawn(async move {
            sqlite
                .apply_run_update(
                    ended,
                    RunUpdate {
                        tokens_input: Some(42),
                        ..Default::default()
                    },
                )
                .await
        })
    };
    until_queued(&sqlite, others.len() + 3).await;
    drop(held);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    metrics.await.unwrap().unwrap();
    assert!(
        matches!(late.await.unwrap(), Err(StoreError::InvalidState(_))),
        "a terminal status is final"
    );
    assert!(matches!(
        missing.await.unwrap(),
        Err(StoreError::NotFound { entity: "run" })
    ));
    assert_eq!(
        sqlite.run_groups_committed(),
        groups + 1,
        "one group, one commit"
    );
    for (i, id) in others.iter().enumerate() {
        let run = sqlite.get_run(*id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(
            run.output_text.as_deref(),
            Some(format!("done {}", i + 1).as_str())
        );
        assert_eq!(run.total_steps, i as i32 + 1);
        assert!(run.completed_at.is_some());
        // Fields the update left out kept their values.
        assert!(run.input_text.starts_with("job "));
        assert_eq!(run.tokens_input, 0);
        assert_eq!(run.limits, Some(serde_json::json!({"max_steps": 3})));
    }
    let ended = sqlite.get_run(ended).await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert_eq!(ended.total_steps, 0, "the refused update changed nothing");
    assert_eq!(
        ended.output_text, None,
        "the refused update changed nothing"
    );
    assert_eq!(ended.tokens_input, 42, "the metrics-only update applied");
    let winner = sqlite.get_run(winner.id).await.unwrap().unwrap();
    assert_eq!(
        (winner.status, winner.tokens_input),
        (RunStatus::Pending, 0)
    );

    // A creation whose caller gave up while it waited is not made: nobody has its id.
    let held = sqlite.hold_writer().await.unwrap();
    let abandoned = create("abandoned".into(), None);
    let kept = create("kept".into(), None);
    until_queued(&sqlite, 2).await;
    abandoned.abort();
    let _ = abandoned.await;
    drop(held);
    let kept = kept.await.unwrap().unwrap();
    let inputs: Vec<String> = sqlite
        .list_runs(
            RunFilter {
                agent_id: Some(agent.id),
                ..Default::default()
            },
            PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.input_text)
        .collect();
    assert!(inputs.contains(&kept.input_text));
    assert!(
        !inputs.iter().any(|i| i == "abandoned"),
        "an abandoned creation was written: {inputs:?}"
    );
}

/// SQLite in memory: there is one database only while every connection shares it, so reads
/// and writes share the one pool, and steps still group-commit through it.
#[tokio::test]
async fn sqlite_in_memory_reads_what_it_wrote() {
    let sqlite =
        leforge_store::SqliteStore::connect("sqlite::memory:", leforge_store::Migrate::Yes)
            .await
            .unwrap();
    assert!(!sqlite.writes_through_dedicated_connection());
    let agent = sqlite.create_agent(new_agent("Memory")).await.unwrap();
    let run = sqlite
        .create_run(NewRun::simple(agent.id, "in memory"))
        .await
        .unwrap();
    sqlite
        .append_step_with_progress(run.id, step(1, "date-utils"), 7, 3)
        .await
        .unwrap();
    sqlite
        .append_step(run.id, step(2, "date-utils"))
        .await
        .unwrap();
    let run = sqlite.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(run.steps.len(), 2);
    assert_eq!(
        (run.total_steps, run.tokens_input, run.tokens_output),
        (1, 7, 3)
    );
}

/// PostgreSQL: steps that arrive while every turn of the step writer is busy are written as
/// one statement; a caller that gives up does not take its step with it; and when one step
/// of a group fails, the others still land and every caller hears its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_queued_steps_and_each_caller_gets_its_own_outcome() {
    let Some((_db, pg)) = direct_postgres().await else {
        return;
    };
    let agent = pg.create_agent(new_agent("Grouped")).await.unwrap();
    let runs = new_runs(&*pg, agent.id, 6).await;
    let append = |run_id: Uuid, n: i32, tokens: i64| {
        let pg = pg.clone();
        tokio::spawn(async move {
            pg.append_step_with_progress(run_id, step(n, "string-utils"), tokens, 1)
                .await
        })
    };

    let quiet_run = pg
        .create_run(NewRun::simple(agent.id, "quiet"))
        .await
        .unwrap()
        .id;
    let mixed_run = pg
        .create_run(NewRun::simple(agent.id, "mixed"))
        .await
        .unwrap()
        .id;

    // Two steps of each run, queued while every turn is held; one caller gives up; one more
    // step carries no progress, so it is stored but moves no counter.
    let held = pg.hold_group_writers().await;
    let groups = pg.step_groups_committed();
    let mut tasks: Vec<_> = runs
        .iter()
        .flat_map(|&id| [append(id, 1, 10), append(id, 2, 20)])
        .collect();
    let quiet = {
        let pg = pg.clone();
        tokio::spawn(async move { pg.append_step(quiet_run, step(1, "json-utils")).await })
    };
    // A run with a step of each kind in the group: both rows count, as one by one.
    let mixed = {
        let pg = pg.clone();
        tokio::spawn(async move { pg.append_step(mixed_run, step(1, "json-utils")).await })
    };
    let mixed_progress = append(mixed_run, 2, 5);
    until_queued(&pg, 15).await;
    tasks.pop().unwrap().abort();
    assert_eq!(
        pg.step_groups_committed(),
        groups,
        "nothing is written while held"
    );
    drop(held);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    quiet.await.unwrap().unwrap();
    mixed.await.unwrap().unwrap();
    mixed_progress.await.unwrap().unwrap();
    assert_eq!(pg.step_groups_committed(), groups + 1, "one statement");
    for id in &runs {
        let run = pg.get_run(*id).await.unwrap().unwrap();
        let numbers: Vec<i32> = run.steps.iter().map(|s| s.step).collect();
        // The abandoned caller's step landed too: it was written with its group.
        assert_eq!((run.total_steps, numbers), (2, vec![1, 2]), "run {id}");
        assert_eq!(
            (run.tokens_input, run.tokens_output),
            (20, 1),
            "the highest tokens"
        );
    }
    let quiet = pg.get_run(quiet_run).await.unwrap().unwrap();
    assert_eq!((quiet.steps.len(), quiet.total_steps), (1, 0));
    let mixed = pg.get_run(mixed_run).await.unwrap().unwrap();
    assert_eq!((mixed.steps.len(), mixed.total_steps), (2, 2));
    assert_eq!(mixed.tokens_input, 5);

    // A group holding a taken step number and a missing run: those two fail, alone.
    let held = pg.hold_group_writers().await;
    let valid: Vec<_> = runs.iter().map(|&id| append(id, 4, 30)).collect();
    let taken = append(runs[0], 1, 30);
    let missing = append(Uuid::new_v4(), 1, 30);
    until_queued(&pg, 8).await;
    drop(held);
    for t in valid {
        t.await.unwrap().unwrap();
    }
    assert_taken_and_missing(taken, missing).await;
    assert_eq!(
        pg.step_groups_committed(),
        groups + 1,
        "the failed group was written one step at a time"
    );
    for id in &runs {
        let run = pg.get_run(*id).await.unwrap().unwrap();
        assert_eq!(run.total_steps, 3, "run {id}");
        assert_eq!(run.steps.last().map(|s| s.step), Some(4));
        assert_eq!(run.tokens_input, 30);
    }
}

/// PostgreSQL: a queue longer than one group's bound is written as more than one statement,
/// and every step still lands and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_step_groups_are_bounded() {
    let Some((_db, pg)) = direct_postgres().await else {
        return;
    };
    let agent = pg.create_agent(new_agent("Long queue")).await.unwrap();
    let runs = new_runs(&*pg, agent.id, 10).await;
    let held = pg.hold_group_writers().await;
    let groups = pg.step_groups_committed();
    // 40 steps, four per run: more than the 32 one statement takes.
    let tasks: Vec<_> = (1..=4)
        .flat_map(|n| runs.iter().map(move |&id| (id, n)))
        .map(|(id, n)| {
            let pg = pg.clone();
            tokio::spawn(async move {
                pg.append_step_with_progress(id, step(n, "string-utils"), 7, 1)
                    .await
            })
        })
        .collect();
    until_queued(&pg, 40).await;
    drop(held);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(pg.step_groups_committed(), groups + 2, "32 steps, then 8");
    for id in &runs {
        let run = pg.get_run(*id).await.unwrap().unwrap();
        let numbers: Vec<i32> = run.steps.iter().map(|s| s.step).collect();
        assert_eq!(
            (run.total_steps, numbers),
            (4, vec![1, 2, 3, 4]),
            "run {id}"
        );
    }
}

/// PostgreSQL: runs created while every turn of the creation writer is busy are inserted by
/// one statement, and each caller gets its own run back; a key used twice in one group fails
/// only its second use; a creation whose caller gave up before its turn is not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_run_creations_with_outcomes_of_their_own() {
    let Some((_db, pg)) = direct_postgres().await else {
        return;
    };
    let agent = pg.create_agent(new_agent("Grouped runs")).await.unwrap();
    let create = |input: String, key: Option<&str>| {
        let pg = pg.clone();
        let mut new = NewRun::simple(agent.id, input);
        new.start = started_job(&new.input_text);
        new.idempotency_key = key.map(str::to_string);
        new.triggered_by = Some("key-1".into());
        new.limits = Some(serde_json::json!({"max_steps": 3}));
        tokio::spawn(async move { pg.create_run(new).await })
    };

    let held = pg.hold_group_writers().await;
    let groups = pg.creation_groups_committed();
    let mut plain: Vec<_> = (0..6).map(|i| create(format!("job {i}"), None)).collect();
    until_queued(&pg, 6).await;
    // The last caller gives up while its creation waits (awaiting the aborted task returns
    // once it has been dropped, with its end of the reply channel).
    let gave_up = plain.pop().unwrap();
    gave_up.abort();
    assert!(gave_up.await.unwrap_err().is_cancelled());
    drop(held);
    let mut ids = std::collections::HashSet::new();
    for (i, t) in plain.into_iter().enumerate() {
        let run = t.await.unwrap().unwrap();
        assert_eq!(run.input_text, format!("job {i}"));
        assert_started_as_asked(&run, i);
        assert_eq!(run.agent_id, agent.id);
        assert_eq!(run.triggered_by.as_deref(), Some("key-1"));
        assert_eq!(run.limits, Some(serde_json::json!({"max_steps": 3})));
        // What the caller got back is what was stored.
        let stored = pg.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(stored.created_at, run.created_at);
        assert_eq!(stored.input_text, run.input_text);
        ids.insert(run.id);
    }
    assert_eq!(ids.len(), 5, "every run has an id of its own");
    assert_eq!(pg.creation_groups_committed(), groups + 1, "one statement");
    let all = pg
        .list_runs(
            RunFilter {
                agent_id: Some(agent.id),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5, "the abandoned creation was not written");

    // One idempotency key twice in one group: the statement fails on the unique index, and
    // the runs are written again one at a time, so only the second use of the key fails.
    let held = pg.hold_group_writers().await;
    let first = create("keyed".into(), Some("same-key"));
    until_queued(&pg, 1).await;
    let second = create("keyed".into(), Some("same-key"));
    until_queued(&pg, 2).await;
    let bystander = create("bystander".into(), None);
    until_queued(&pg, 3).await;
    drop(held);
    let winner = first.await.unwrap().unwrap();
    assert_eq!(winner.idempotency_key.as_deref(), Some("same-key"));
    match second.await.unwrap() {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "idempotency_key"),
        other => panic!("the second use of a key should conflict, got {other:?}"),
    }
    let bystander = bystander.await.unwrap().unwrap();
    assert_eq!(
        pg.get_run(bystander.id).await.unwrap().unwrap().input_text,
        "bystander"
    );
    assert_eq!(pg.creation_groups_committed(), groups + 1);
}

/// PostgreSQL: run updates queued while the writers are busy are written as one statement
/// whatever their shapes, each caller hearing its own outcome: an update to a terminal run
/// and one to a missing run fail alone, a metrics-only update still applies to a terminal
/// run, and two updates of one run are written one after the other, both applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_run_updates_with_outcomes_of_their_own() {
    let Some((_db, pg)) = direct_postgres().await else {
        return;
    };
    let agent = pg.create_agent(new_agent("Grouped updates")).await.unwrap();
    let ids = new_runs(&*pg, agent.id, 6).await;
    // Two terminal runs: updates of one run cannot share a statement (below).
    let (ended, also_ended) = (ids[4], ids[5]);
    for id in [ended, also_ended] {
        pg.apply_run_update(
            id,
            RunUpdate {
                status: Some(RunStatus::Cancelled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let update = |id: Uuid, update: RunUpdate| {
        let pg = pg.clone();
        tokio::spawn(async move { pg.apply_run_update(id, update).await })
    };
    let lease_until = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
    // PostgreSQL keeps microseconds.
    let finished_at = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);

    let held = pg.hold_group_writers().await;
    let groups = pg.update_groups_committed();
    let shapes = [
        // A run's end.
        RunUpdate {
            status: Some(RunStatus::Completed),
            output: Some(json!({"West": 2700})),
            output_text: Some("done".into()),
            total_steps: Some(3),
            tokens_input: Some(120),
            tokens_output: Some(30),
            duration_ms: Some(812),
            completed_at: Some(finished_at),
            ..Default::default()
        },
        // A run's start, under a lease.
        RunUpdate {
            status: Some(RunStatus::Running),
            started_at: Some(finished_at),
            lease: Some(("worker-7".into(), lease_until)),
            ..Default::default()
        },
        // Metrics only.
        RunUpdate {
            tokens_input: Some(5),
            ..Default::default()
        },
        // A failure: its code and message each in their own column.
        RunUpdate {
            status: Some(RunStatus::Failed),
            error_code: Some("RUN_FAILED".into()),
            error_message: Some("the tool failed".into()),
            ..Default::default()
        },
    ];
    let mut tasks: Vec<_> = ids[..4]
        .iter()
        .zip(shapes)
        .map(|(id, shape)| update(*id, shape))
        .collect();
    let late = update(
        ended,
        RunUpdate {
            status: Some(RunStatus::Completed),
            ..Default::default()
        },
    );
    let missing = update(
        Uuid::new_v4(),
        RunUpdate {
            status: Some(RunStatus::Failed),
            ..Default::default()
        },
    );
    let metrics_of_ended = update(
        also_ended,
        RunUpdate {
            tokens_output: Some(9),
            ..Default::default()
        },
    );
    until_queued(&pg, 7).await;
    drop(held);
    for t in tasks.drain(..) {
        t.await.unwrap().unwrap();
    }
    assert!(
        matches!(late.await.unwrap(), Err(StoreError::InvalidState(_))),
        "a terminal status is final"
    );
    assert!(matches!(
        missing.await.unwrap(),
        Err(StoreError::NotFound { .. })
    ));
    metrics_of_ended.await.unwrap().unwrap();
    assert_eq!(pg.update_groups_committed(), groups + 1, "one statement");

    let done = pg.get_run(ids[0]).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(json!({"West": 2700})));
    assert_eq!(done.output_text.as_deref(), Some("done"));
    assert_eq!(
        (done.total_steps, done.tokens_input, done.tokens_output),
        (3, 120, 30)
    );
    assert_eq!(done.duration_ms, Some(812));
    assert_eq!(done.completed_at, Some(finished_at));
    assert_eq!(
        done.input_text, "job 0",
        "fields left out keep their values"
    );
    let started = pg.get_run(ids[1]).await.unwrap().unwrap();
    assert_eq!(started.status, RunStatus::Running);
    assert_eq!(started.started_at, Some(finished_at));
    assert_eq!(started.worker.as_deref(), Some("worker-7"));
    assert_eq!(started.output, None);
    let measured = pg.get_run(ids[2]).await.unwrap().unwrap();
    assert_eq!(
        (measured.status, measured.tokens_input),
        (RunStatus::Pending, 5)
    );
    let failed = pg.get_run(ids[3]).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        (
            failed.error_code.as_deref(),
            failed.error_message.as_deref()
        ),
        (Some("RUN_FAILED"), Some("the tool failed"))
    );
    let ended_run = pg.get_run(ended).await.unwrap().unwrap();
    assert_eq!(ended_run.status, RunStatus::Cancelled);
    let measured_after = pg.get_run(also_ended).await.unwrap().unwrap();
    assert_eq!(
        (measured_after.status, measured_after.tokens_output),
        (RunStatus::Cancelled, 9)
    );

    // Two updates of one run cannot share a statement (an UPDATE changes a row once): they
    // are written one after the other, in the order they were queued, and both apply.
    let held = pg.hold_group_writers().await;
    let groups = pg.update_groups_committed();
    let first = update(
        ids[2],
        RunUpdate {
            output_text: Some("first".into()),
            tokens_output: Some(1),
            ..Default::default()
        },
    );
    until_queued(&pg, 1).await;
    let second = update(
        ids[2],
        RunUpdate {
            output_text: Some("second".into()),
            ..Default::default()
        },
    );
    until_queued(&pg, 2).await;
    drop(held);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let twice = pg.get_run(ids[2]).await.unwrap().unwrap();
    assert_eq!(twice.output_text.as_deref(), Some("second"));
    assert_eq!(twice.tokens_output, 1);
    assert_eq!(pg.update_groups_committed(), groups, "written one by one");
}

/// PostgreSQL: the API-key and agent reads of concurrent run requests are made together, one
/// statement per kind, and each caller hears its own answer: found by hash, by slug or by id
/// (asked twice, too); nothing for a revoked key, a deleted agent, an unknown one or a slug
/// PostgreSQL could not even store; an error only for the caller whose agent's row does not
/// decode. A read waiting for its turn sees what was committed until its statement ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_groups_key_and_agent_reads_with_answers_of_their_own() {
    let Some((_db, pg)) = direct_postgres().await else {
        return;
    };
    let key = |name: &str, hash: char| NewApiKey {
        name: name.into(),
        prefix: "lf_read0".into(),
        key_hash: hash.to_string().repeat(64),
        scope: ApiKeyScope::Invoke,
    };
    let live_key = pg.create_api_key(key("live", 'a')).await.unwrap();
    let revoked = pg.create_api_key(key("revoked", 'b')).await.unwrap();
    pg.revoke_api_key(revoked.id).await.unwrap();
    let soon_revoked = pg.create_api_key(key("soon revoked", 'd')).await.unwrap();
    let agent = pg.create_agent(new_agent("Read Together")).await.unwrap();
    let other = pg.create_agent(new_agent("Read Too")).await.unwrap();
    let deleted = pg.create_agent(new_agent("Read Gone")).await.unwrap();
    pg.delete_agent(deleted.id).await.unwrap();
    let broken = pg.create_agent(new_agent("Read Broken")).await.unwrap();
    sqlx::query("UPDATE agents SET config = '{\"max_steps\": \"many\"}' WHERE id = $1")
        .bind(broken.id)
        .execute(pg.pool())
        .await
        .unwrap();

    let held = pg.hold_group_reads().await;
    let groups = pg.read_groups_run();
    let find_key = |hash: char| {
        let pg = pg.clone();
        tokio::spawn(async move { pg.find_active_api_key(&hash.to_string().repeat(64)).await })
    };
    let find_agent = |id_or_slug: String| {
        let pg = pg.clone();
        tokio::spawn(async move { pg.find_agent(&id_or_slug).await })
    };
    let keys = [
        find_key('a'),
        find_key('a'),
        find_key('b'),
        find_key('c'),
        find_key('d'),
    ];
    let agents = [
        find_agent(agent.slug.clone()),
        find_agent(agent.id.to_string()),
        find_agent(other.slug.clone()),
        find_agent(agent.slug.clone()),
        find_agent(deleted.slug.clone()),
        find_agent(deleted.id.to_string()),
        find_agent("no-such-agent".into()),
        find_agent(Uuid::new_v4().to_string()),
        find_agent("nul\0slug".into()),
    ];
    let broken_read = find_agent(broken.slug.clone());
    until_counted(
        keys.len() + agents.len() + 1,
        || pg.reads_queued(),
        "reads queued",
    )
    .await;
    // Revoked while its read waits: the read's statement starts later, and sees it.
    pg.revoke_api_key(soon_revoked.id).await.unwrap();
    drop(held);

    let found_keys = answers(keys).await;
    assert_eq!(
        found_keys,
        [
            Some(live_key.clone()),
            Some(live_key.clone()),
            None,
            None,
            None
        ],
        "the live key (twice); nothing for a revoked key, an unknown one, and one revoked while \
         its read waited"
    );
    let found_agents = answers(agents).await;
    assert_eq!(
        found_agents,
        [
            Some(agent.clone()),
            Some(agent.clone()),
            Some(other.clone()),
            Some(agent.clone()),
            None,
            None,
            None,
            None,
            None
        ]
    );
    assert!(
        broken_read.await.unwrap().is_err(),
        "a row that does not decode is an error for whoever asked for it"
    );
    assert_eq!(pg.read_groups_run(), groups + 2, "one statement per kind");

    // Idle, a read is a statement of its own, and sees a revocation made just before it.
    pg.revoke_api_key(live_key.id).await.unwrap();
    assert_eq!(pg.find_active_api_key(&"a".repeat(64)).await.unwrap(), None);
    assert_eq!(pg.read_groups_run(), groups + 2);
}

/// PostgreSQL: step rows commit asynchronously (their own pool's sessions), everything else
/// synchronously; see `PgStore::connect`.
#[tokio::test]
async fn postgres_commits_only_step_progress_asynchronously() {
    let Some((_db, pg)) = direct_postgres().await else {
        return;
    };
    let setting = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            let (v,): (String,) = sqlx::query_as("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await
                .unwrap();
            v
        }
    };
    assert_eq!(setting(pg.progress_pool()).await, "off");
    assert_eq!(setting(pg.writer_pool()).await, "on");
    assert_eq!(setting(pg.pool()).await, "on");
}

#[tokio::test]
async fn api_keys_store_only_hashes_and_revoke_at_once() {
    each_backend(|store| async move {
        assert_eq!(store.count_api_keys(None).await.unwrap(), 0);
        let k = store
            .create_api_key(NewApiKey {
                name: "n8n".into(),
                prefix: "lf_abcde".into(),
                key_hash: "a".repeat(64),
                scope: ApiKeyScope::Invoke,
            })
            .await
            .unwrap();
        assert_eq!(k.scope, ApiKeyScope::Invoke);
        assert!(k.last_used_at.is_none());
        assert_eq!(store.count_api_keys(None).await.unwrap(), 1);
        assert_eq!(
            store
                .count_api_keys(Some(ApiKeyScope::Admin))
                .await
                .unwrap(),
            0
        );
        let found = store
            .find_active_api_key(&"a".repeat(64))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, k.id);
        assert!(store
            .find_active_api_key(&"b".repeat(64))
            .await
            .unwrap()
            .is_none());

        store.touch_api_key(k.id).await.unwrap();
        let listed = store.list_api_keys(PageRequest::default()).await.unwrap();
        assert!(listed.items[0].last_used_at.is_some());

        let revoked = store.revoke_api_key(k.id).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert!(store
            .find_active_api_key(&"a".repeat(64))
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            store.revoke_api_key(k.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.count_api_keys(None).await.unwrap(), 0);
        assert_eq!(
            store
                .list_api_keys(PageRequest::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert!(matches!(
            store
                .create_api_key(NewApiKey {
                    name: "dup".into(),
                    prefix: "lf_abcde".into(),
                    key_hash: "a".repeat(64),
                    scope: ApiKeyScope::Admin,
                })
                .await,
            Err(StoreError::Conflict { .. })
        ));
    })
    .await;
}

fn manifest(id: &str, version: &str) -> leforge_core::forgehook::Manifest {
    leforge_core::forgehook::Manifest::from_json(
        &json!({
            "id": id, "name": "Echo", "version": version, "description": "echo",
            "endpoints": [{"name": "echo", "description": "Echo it back.",
                           "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}],
            "capabilities": {"config": [{"name": "token", "secret": true}, {"name": "region"}]}
        })
        .to_string(),
    )
    .unwrap()
}

#[tokio::test]
async fn forgehooks_install_upgrade_configure_and_remove() {
    use leforge_core::installed::NewInstalledForgehook;
    each_backend(|store| async move {
        // Every stored change moves the version other servers poll.
        let mut versions = vec![store.forgehooks_version().await.unwrap()];
        let installed = store
            .upsert_forgehook(NewInstalledForgehook {
                manifest: manifest("echo", "1.0.0"),
                wasm_sha256: Some("aa".repeat(32)),
                builtin: false,
            })
            .await
            .unwrap();
        assert!(installed.enabled);
        versions.push(store.forgehooks_version().await.unwrap());
        assert_eq!(installed.manifest.version, "1.0.0");
        let disabled = store.set_forgehook_enabled("echo", false).await.unwrap();
        assert!(!disabled.enabled);
        versions.push(store.forgehooks_version().await.unwrap());
        let config = [
            ("token".to_string(), "s3cret".to_string()),
            ("region".to_string(), "eu".to_string()),
        ]
        .into_iter()
        .collect();
        let configured = store.set_forgehook_config("echo", config).await.unwrap();
        assert_eq!(configured.config["token"], "s3cret");
        assert_eq!(
            configured.public_config()["token"],
            leforge_core::installed::SECRET_MASK
        );
        assert_eq!(configured.public_config()["region"], "eu");
        versions.push(store.forgehooks_version().await.unwrap());

        // An upgrade replaces manifest and code, keeps state and configuration.
        let upgraded = store
            .upsert_forgehook(NewInstalledForgehook {
                manifest: manifest("echo", "1.1.0"),
                wasm_sha256: Some("bb".repeat(32)),
                builtin: false,
            })
            .await
            .unwrap();
        assert_eq!(upgraded.manifest.version, "1.1.0");
        assert_eq!(upgraded.wasm_sha256, Some("bb".repeat(32)));
        assert!(!upgraded.enabled);
        assert_eq!(upgraded.config["region"], "eu");
        assert_eq!(upgraded.installed_at, installed.installed_at);
        versions.push(store.forgehooks_version().await.unwrap());

        store
            .upsert_forgehook(NewInstalledForgehook {
                manifest: manifest("another", "0.1.0"),
                wasm_sha256: None,
                builtin: true,
            })
            .await
            .unwrap();
        let ids: Vec<_> = store
            .list_forgehooks()
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["another", "echo"]);
        let removed = store.delete_forgehook("echo").await.unwrap();
        assert_eq!(removed.id, "echo");
        versions.push(store.forgehooks_version().await.unwrap());
        let distinct: std::collections::HashSet<_> = versions.iter().collect();
        assert_eq!(distinct.len(), versions.len(), "{versions:?}");
        assert_eq!(
            store.forgehooks_version().await.unwrap(),
            *versions.last().unwrap(),
            "stable without a change"
        );
        assert!(store.get_forgehook("echo").await.unwrap().is_none());
        assert!(matches!(
            store.delete_forgehook("echo").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.set_forgehook_enabled("echo", true).await,
            Err(StoreError::NotFound { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn wasm_blobs_are_content_addressed() {
    each_backend(|store| async move {
        let bytes = vec![0u8, 97, 115, 109, 1, 2, 3];
        store.put_wasm_blob("abc", &bytes).await.unwrap();
        store.put_wasm_blob("abc", &bytes).await.unwrap();
        assert_eq!(store.get_wasm_blob("abc").await.unwrap(), Some(bytes));
        store.delete_wasm_blob("abc").await.unwrap();
        assert_eq!(store.get_wasm_blob("abc").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn queued_runs_are_claimed_once_leased_and_reaped() {
    use leforge_core::{CallbackAttempt, RunMode};
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Queue")).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let run = store
                .create_run(NewRun {
                    mode: RunMode::Async,
                    ..NewRun::simple(a.id, format!("job {i}"))
                })
                .await
                .unwrap();
            ids.push(run.id);
        }
        // A sync run is never claimed by queue workers.
        let sync = store
            .create_run(NewRun::simple(a.id, "sync"))
            .await
            .unwrap();
        let lease = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        let first = store.claim_queued_runs("w1", 3, lease).await.unwrap();
        let second = store.claim_queued_runs("w2", 10, lease).await.unwrap();
        assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..3]);
        assert_eq!(second.iter().map(|r| r.id).collect::<Vec<_>>(), ids[3..]);
        assert!(first.iter().all(|r| r.status == RunStatus::Running));
        assert!(store
            .claim_queued_runs("w3", 10, lease)
            .await
            .unwrap()
            .is_empty());

        assert_eq!(store.renew_leases("w1", &ids, lease).await.unwrap(), 3);
        assert_eq!(
            store.renew_leases("w2", &ids[..3], lease).await.unwrap(),
            0,
            "not its runs"
        );

        // w2 dies: its leases expire; w1 keeps renewing.
        let past = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        store.renew_leases("w2", &ids, past).await.unwrap();
        store
            .append_step(ids[3], step(1, "data-transform"))
            .await
            .unwrap();
        let long_ago = chrono::Utc::now() - chrono::TimeDelta::hours(1);
        let reaped = store
            .interrupt_expired_runs(chrono::Utc::now(), long_ago)
            .await
            .unwrap();
        let mut expect = ids[3..].to_vec();
        let mut got = reaped.clone();
        expect.sort();
        got.sort();
        assert_eq!(got, expect);
        let interrupted = store.get_run(ids[3]).await.unwrap().unwrap();
        assert_eq!(interrupted.status, RunStatus::Interrupted);
        assert_eq!(interrupted.steps.len(), 1, "finished steps are kept");
        assert_eq!(
            store.get_run(ids[0]).await.unwrap().unwrap().status,
            RunStatus::Running
        );
        // A sync run left `pending` (its server stopped between insert and start) is
        // reaped once it is older than the cut-off; queued async runs never are.
        let queued = store
            .create_run(NewRun {
                mode: RunMode::Async,
                ..NewRun::simple(a.id, "still queued")
            })
            .await
            .unwrap();
        assert_eq!(
            store.get_run(sync.id).await.unwrap().unwrap().status,
            RunStatus::Pending
        );
        let soon = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
        let reaped = store
            .interrupt_expired_runs(chrono::Utc::now(), soon)
            .await
            .unwrap();
        assert_eq!(reaped, [sync.id]);
        assert_eq!(
            store.get_run(sync.id).await.unwrap().unwrap().status,
            RunStatus::Interrupted
        );
        assert_eq!(
            store.get_run(queued.id).await.unwrap().unwrap().status,
            RunStatus::Pending
        );

        store
            .record_callback_attempt(
                ids[0],
                CallbackAttempt {
                    attempt: 1,
                    at: chrono::Utc::now(),
                    status: Some(500),
                    error: None,
                },
                None,
            )
            .await
            .unwrap();
        let run = store.get_run(ids[0]).await.unwrap().unwrap();
        assert_eq!(run.callback_attempts.len(), 1);
        assert_eq!(run.callback_attempts[0].status, Some(500));
    })
    .await;
}

/// The callback outbox: a run with a callback URL is owed a delivery once it is terminal,
/// whatever ended it; a claim keeps it from a second worker until the claim lapses; an
/// attempt either schedules the next one or ends the debt.
#[tokio::test]
async fn finished_runs_with_a_callback_are_claimed_once_until_delivered() {
    use leforge_core::RunMode;
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Outbox")).await.unwrap();
        let with_callback = |input: &str| NewRun {
            mode: RunMode::Async,
            callback_url: Some("https://hooks.example.com/done".into()),
            ..NewRun::simple(a.id, input)
        };
        let done = store.create_run(with_callback("done")).await.unwrap();
        let waiting = store
            .create_run(with_callback("still pending"))
            .await
            .unwrap();
        let plain = store
            .create_run(NewRun {
                mode: RunMode::Async,
                ..NewRun::simple(a.id, "no callback")
            })
            .await
            .unwrap();
        for id in [done.id, plain.id] {
            store
                .update_run(
                    id,
                    RunUpdate {
                        status: Some(RunStatus::Completed),
                        completed_at: Some(chrono::Utc::now()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        let now = || chrono::Utc::now() + chrono::TimeDelta::milliseconds(5);
        let claim = |s: i64| chrono::Utc::now() + chrono::TimeDelta::seconds(s);
        // Only the finished run with a callback is due; a pending one owes nothing yet.
        let claimed = store
            .claim_due_callbacks(now(), claim(30), 10)
            .await
            .unwrap();
        assert_eq!(claimed, [done.id]);
        // Claimed: no second worker gets it.
        assert!(store
            .claim_due_callbacks(now(), claim(30), 10)
            .await
            .unwrap()
            .is_empty());
        // A failed attempt schedules the next one, in the future: not due yet.
        let attempt = |n: u32, status: u16| leforge_core::CallbackAttempt {
            attempt: n,
            at: chrono::Utc::now(),
            status: Some(status),
            error: None,
        };
        store
            .record_callback_attempt(done.id, attempt(1, 503), Some(claim(60)))
            .await
            .unwrap();
        assert!(store
            .claim_due_callbacks(now(), claim(30), 10)
            .await
            .unwrap()
            .is_empty());
        // ... and due once its time has come.
        assert_eq!(
            store
                .claim_due_callbacks(claim(61), claim(90), 10)
                .await
                .unwrap(),
            [done.id]
        );
        // A claim whose worker died lapses, and another worker takes it over.
        assert_eq!(
            store
                .claim_due_callbacks(claim(91), claim(120), 10)
                .await
                .unwrap(),
            [done.id]
        );
        store
            .record_callback_attempt(done.id, attempt(2, 200), None)
            .await
            .unwrap();
        assert!(store
            .claim_due_callbacks(claim(200), claim(230), 10)
            .await
            .unwrap()
            .is_empty());
        let run = store.get_run(done.id).await.unwrap().unwrap();
        assert_eq!(
            run.callback_attempts
                .iter()
                .map(|a| a.status)
                .collect::<Vec<_>>(),
            [Some(503), Some(200)]
        );
        // A run interrupted by the reaper owes its callback too.
        store
            .update_run(
                waiting.id,
                RunUpdate {
                    status: Some(RunStatus::Running),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let reaped = store
            .interrupt_expired_runs(claim(300), chrono::Utc::now())
            .await
            .unwrap();
        assert!(reaped.contains(&waiting.id), "{reaped:?}");
        assert_eq!(
            store
                .claim_due_callbacks(claim(301), claim(330), 10)
                .await
                .unwrap(),
            [waiting.id]
        );
    })
    .await;
}

/// A server with a free slot creates the async run it accepts already started, under its
/// own lease: no queue worker may claim it, and it is renewed and reaped like a claimed one.
#[tokio::test]
async fn a_run_created_started_is_running_under_its_lease_and_never_claimed() {
    use leforge_core::{RunMode, RunStart};
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Started")).await.unwrap();
        let lease = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        let started = store
            .create_run(NewRun {
                mode: RunMode::Async,
                start: Some(RunStart {
                    owner: "w1".into(),
                    lease_until: lease,
                }),
                ..NewRun::simple(a.id, "at once")
            })
            .await
            .unwrap();
        let queued = store
            .create_run(NewRun {
                mode: RunMode::Async,
                ..NewRun::simple(a.id, "later")
            })
            .await
            .unwrap();
        assert_eq!(started.status, RunStatus::Running);
        assert_eq!(started.started_at, Some(started.created_at));
        assert_eq!(started.worker.as_deref(), Some("w1"));
        assert_eq!(
            store.get_run(started.id).await.unwrap().unwrap(),
            started,
            "what the caller got back is what was stored"
        );
        assert_eq!(queued.status, RunStatus::Pending);

        // Queue workers look for pending runs only: the started one is never claimed.
        let claimed = store.claim_queued_runs("w2", 10, lease).await.unwrap();
        assert_eq!(
            claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
            [queued.id]
        );
        // Its lease is its creator's, renewed and reaped like a claimed run's.
        assert_eq!(
            store
                .renew_leases("w1", &[started.id], lease)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .renew_leases("w2", &[started.id], lease)
                .await
                .unwrap(),
            0
        );
        let past = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        store.renew_leases("w1", &[started.id], past).await.unwrap();
        let reaped = store
            .interrupt_expired_runs(chrono::Utc::now(), past)
            .await
            .unwrap();
        assert_eq!(reaped, [started.id]);
    })
    .await;
}

#[tokio::test]
async fn idempotency_keys_are_unique_per_agent_and_caller_until_expired() {
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Idem")).await.unwrap();
        let b = store.create_agent(new_agent("Other Idem")).await.unwrap();
        let keyed = |agent_id, scope: &str| NewRun {
            idempotency_key: Some("order-42".into()),
            idempotency_scope: scope.to_string(),
            request_hash: Some("h1".into()),
            ..NewRun::simple(agent_id, "x")
        };
        let first = store.create_run(keyed(a.id, "key:1")).await.unwrap();
        match store.create_run(keyed(a.id, "key:1")).await {
            Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "idempotency_key"),
            other => panic!("expected conflict, got {other:?}"),
        }
        store.create_run(keyed(b.id, "key:1")).await.unwrap();
        // Another caller's same key is another run.
        let theirs = store.create_run(keyed(a.id, "ip:10.0.0.9")).await.unwrap();
        let since = chrono::Utc::now() - chrono::TimeDelta::hours(24);
        let found = store
            .find_run_by_idempotency_key(a.id, "key:1", "order-42", since)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, first.id);
        assert_eq!(found.request_hash.as_deref(), Some("h1"));
        assert_eq!(found.idempotency_key.as_deref(), Some("order-42"));
        let found = store
            .find_run_by_idempotency_key(a.id, "ip:10.0.0.9", "order-42", since)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, theirs.id);
        assert!(store
            .find_run_by_idempotency_key(a.id, "key:2", "order-42", since)
            .await
            .unwrap()
            .is_none());
        let future = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
        assert!(store
            .find_run_by_idempotency_key(a.id, "key:1", "order-42", future)
            .await
            .unwrap()
            .is_none());
        store
            .expire_idempotency_key(a.id, "key:1", "order-42", future)
            .await
            .unwrap();
        store.create_run(keyed(a.id, "key:1")).await.unwrap();
        // Expiring one caller's key leaves the other's in force.
        match store.create_run(keyed(a.id, "ip:10.0.0.9")).await {
            Err(StoreError::Conflict { .. }) => {}
            other => panic!("expected conflict, got {other:?}"),
        }
    })
    .await;
}

// ---- Hook scripts (issue #7) ----

fn new_script(name: &str) -> leforge_core::NewScript {
    leforge_core::NewScript {
        name: name.into(),
        description: Some("masks things".into()),
        source: "fn on_run_start(ctx) { () }".into(),
    }
}

#[tokio::test]
async fn scripts_round_trip_version_on_update_and_conflict_on_name() {
    each_backend(|store| async move {
        let s = store.create_script(new_script("redact")).await.unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(store.find_script("redact").await.unwrap(), Some(s.clone()));
        assert_eq!(
            store.find_script(&s.id.to_string()).await.unwrap(),
            Some(s.clone())
        );
        assert!(store.find_script("nope").await.unwrap().is_none());
        match store.create_script(new_script("redact")).await {
            Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "name"),
            other => panic!("expected a name conflict, got {other:?}"),
        }
        let other = store.create_script(new_script("other")).await.unwrap();
        let updated = store
            .update_script(
                s.id,
                leforge_core::ScriptPatch {
                    name: Some("redact2".into()),
                    description: Some(None),
                    source: Some("fn on_run_end(ctx, output) { output }".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.name, "redact2");
        assert_eq!(updated.description, None);
        assert!(updated.source.contains("on_run_end"));
        assert_eq!(updated.created_at, s.created_at);
        // Renaming onto another script's name is a conflict; an unknown id is not found.
        assert!(matches!(
            store
                .update_script(
                    s.id,
                    leforge_core::ScriptPatch {
                        name: Some("other".into()),
                        ..Default::default()
                    }
                )
                .await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            store
                .update_script(Uuid::new_v4(), Default::default())
                .await,
            Err(StoreError::NotFound { .. })
        ));
        // Newest first, paged by seq.
        let page = store
            .list_scripts(PageRequest::from_params(Some(1), None).unwrap())
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, other.id);
        let rest = store
            .list_scripts(PageRequest::from_params(Some(1), page.next_cursor.as_deref()).unwrap())
            .await
            .unwrap();
        assert_eq!(rest.items[0].id, s.id);
        let deleted = store.delete_script(other.id).await.unwrap();
        assert_eq!(deleted.name, "other");
        assert!(matches!(
            store.delete_script(other.id).await,
            Err(StoreError::NotFound { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn agents_keep_hook_ids_and_are_found_by_script() {
    each_backend(|store| async move {
        let s1 = store.create_script(new_script("s1")).await.unwrap();
        let s2 = store.create_script(new_script("s2")).await.unwrap();
        let mut with_hooks = new_agent("Hooked");
        with_hooks.hooks = vec![s2.id, s1.id];
        let a = store.create_agent(with_hooks).await.unwrap();
        assert_eq!(a.hooks, vec![s2.id, s1.id]);
        let b = store.create_agent(new_agent("Plain")).await.unwrap();
        assert!(b.hooks.is_empty());
        let users = store.agents_using_script(s1.id).await.unwrap();
        assert_eq!(users.iter().map(|a| a.id).collect::<Vec<_>>(), vec![a.id]);
        let b = store
            .update_agent(
                b.id,
                AgentPatch {
                    hooks: Some(vec![s1.id]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(b.hooks, vec![s1.id]);
        assert_eq!(store.agents_using_script(s1.id).await.unwrap().len(), 2);
        // Deleted agents no longer hold a script.
        store.delete_agent(a.id).await.unwrap();
        let users = store.agents_using_script(s1.id).await.unwrap();
        assert_eq!(users.iter().map(|a| a.id).collect::<Vec<_>>(), vec![b.id]);
        assert!(store.agents_using_script(s2.id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn hook_records_come_back_with_the_run_in_order() {
    use leforge_core::hook::{HookLog, HookLogLevel, HookPoint, HookRecord, HookRecordOutcome};
    each_backend(|store| async move {
        let a = store.create_agent(new_agent("Traced")).await.unwrap();
        let run = store.create_run(NewRun::simple(a.id, "hi")).await.unwrap();
        assert!(run.hooks.is_empty());
        let record = |hook, step, outcome| HookRecord {
            hook,
            script: "audit".into(),
            script_id: Uuid::from_u128(7),
            script_version: 3,
            duration_ms: 0.125,
            outcome,
            logs: vec![HookLog {
                level: HookLogLevel::Warn,
                message: "careful".into(),
            }],
            step,
        };
        let first = vec![record(
            HookPoint::OnRunStart,
            None,
            HookRecordOutcome::Replaced {
                changes: json!({"input": "masked"}),
            },
        )];
        let second = vec![
            record(
                HookPoint::BeforeTool,
                Some(1),
                HookRecordOutcome::Denied {
                    reason: "too big".into(),
                },
            ),
            record(HookPoint::AfterTool, Some(1), HookRecordOutcome::Unchanged),
        ];
        store.append_run_hooks(run.id, &first).await.unwrap();
        store.append_run_hooks(run.id, &second).await.unwrap();
        store.append_run_hooks(run.id, &[]).await.unwrap();
        let got = store.get_run(run.id).await.unwrap().unwrap();
        let expected: Vec<_> = first.into_iter().chain(second).collect();
        assert_eq!(got.hooks, expected);
        // Listing carries them too.
        let listed = store
            .list_runs(
                RunFilter {
                    agent_id: Some(a.id),
                    ..Default::default()
                },
                PageRequest::from_params(None, None).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(listed.items[0].hooks.len(), 3);
        assert!(matches!(
            store.append_run_hooks(Uuid::new_v4(), &expected[..1]).await,
            Err(StoreError::NotFound { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn runs_are_counted_by_status_and_pools_report_their_connections() {
    each_backend(|store| async move {
        let agent = store.create_agent(new_agent("counted")).await.unwrap();
        let pending_before = store.count_runs(RunStatus::Pending).await.unwrap();
        let running_before = store.count_runs(RunStatus::Running).await.unwrap();
        let ids = new_runs(store.as_ref(), agent.id, 3).await;
        store
            .update_run(
                ids[0],
                RunUpdate {
                    status: Some(RunStatus::Running),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.count_runs(RunStatus::Pending).await.unwrap(),
            pending_before + 2
        );

        assert_eq!(
            store.count_runs(RunStatus::Running).await.unwrap(),
            running_before + 1
        );
        // The trace context a run was created under comes back with it.
        let traced = store
            .create_run(NewRun {
                trace_context: Some(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ),
                ..NewRun::simple(agent.id, "traced")
            })
            .await
            .unwrap();
        let read = store.get_run(traced.id).await.unwrap().unwrap();
        assert_eq!(read.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            store.get_run(ids[1]).await.unwrap().unwrap().trace_context,
            None
        );
        // The reads above opened connections (sqlx gives one back in a task of its own, so
        // it may still count as in use for a moment).
        let stats = store.pool_stats();
        assert!(stats.in_use + stats.idle >= 1, "{stats:?}");
    })
    .await;
}

#[tokio::test]
async fn mcp_servers_round_trip_conflict_replace_and_delete() {
    use leforge_core::mcp::{McpServer, McpTool, McpTransport};
    each_backend(|store| async move {
        let t = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let server = McpServer {
            name: "calc".into(),
            transport: McpTransport::Http {
                url: "https://mcp.example.com/mcp".into(),
                headers: [("Authorization".to_string(), "Bearer s3cret".to_string())].into(),
            },
            timeout_ms: 5000,
            enabled: true,
            tools: vec![McpTool {
                name: "add".into(),
                description: "Adds".into(),
                input_schema: json!({"type": "object", "properties": {"a": {"type": "number"}}}),
                output_schema: Some(json!({"type": "object"})),
            }],
            created_at: t,
            updated_at: t,
            refreshed_at: t,
        };
        let created = store.create_mcp_server(server.clone()).await.unwrap();
        // The store keeps its own timestamps.
        assert!(created.created_at > t);
        assert_eq!(created.tools, server.tools);
        assert_eq!(created.transport, server.transport);
        match store.create_mcp_server(server.clone()).await {
            Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "name"),
            other => panic!("expected conflict, got {other:?}"),
        }
        let read = store.get_mcp_server("calc").await.unwrap().unwrap();
        assert_eq!(read, created);
        assert!(store.get_mcp_server("nope").await.unwrap().is_none());

        let mut changed = created.clone();
        changed.enabled = false;
        changed.tools.clear();
        let replaced = store.replace_mcp_server(changed).await.unwrap();
        assert!(!replaced.enabled);
        assert!(replaced.tools.is_empty());
        assert_eq!(replaced.created_at, created.created_at);
        assert!(replaced.updated_at >= created.updated_at);

        let mut other = server.clone();
        other.name = "another".into();
        store.create_mcp_server(other).await.unwrap();
        let names: Vec<_> = store
            .list_mcp_servers()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["another", "calc"]);

        let gone = store.delete_mcp_server("calc").await.unwrap();
        assert_eq!(gone.name, "calc");
        assert!(matches!(
            store.delete_mcp_server("calc").await,
            Err(StoreError::NotFound { .. })
        ));
        let mut ghost = server.clone();
        ghost.name = "ghost".into();
        assert!(matches!(
            store.replace_mcp_server(ghost).await,
            Err(StoreError::NotFound { .. })
        ));
    })
    .await;
}
