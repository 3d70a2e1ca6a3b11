//! Hostile scripts end with `HOOK_LIMIT_EXCEEDED` naming the limit and the script, and the
//! runner keeps serving other calls meanwhile. No test asserts a duration: each limit is
//! isolated by raising the others.

use std::time::Duration;

use leforge_core::hook::{HookError, HookLimit, HookRecordOutcome, HookRunner};
use leforge_scripting::{HookConfig, RhaiHookRunner};
use serde_json::json;

use super::*;

/// Only `limit` can trip: the deadline is far away unless it is the limit under test.
fn isolated(limit: &str) -> RhaiHookRunner {
    let mut config = HookConfig {
        timeout: Duration::from_secs(600),
        ..HookConfig::default()
    };
    if limit == HookLimit::TIME {
        config.timeout = Duration::from_millis(200);
        config.max_operations = 0; // unlimited
    }
    runner_with(config)
}

async fn limit_of(runner: &RhaiHookRunner, body: &str) -> HookError {
    let source = format!("fn before_tool(ctx, call) {{\n{body}\n}}");
    let out = runner
        .before_tool(
            &session(vec![script("hostile", &source)]),
            &ctx(),
            &call(json!({})),
        )
        .await;
    let err = out.outcome.expect_err("the hostile script must be stopped");
    assert_eq!(err.code(), "HOOK_LIMIT_EXCEEDED", "{err:?}");
    assert!(
        matches!(&out.records[0].outcome, HookRecordOutcome::Failed { code, .. } if code == "HOOK_LIMIT_EXCEEDED")
    );
    err
}

fn exceeded(limit: &str) -> HookError {
    HookError::LimitExceeded {
        script: "hostile".into(),
        limit: limit.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_runs_out_of_operations() {
    let err = limit_of(&isolated(HookLimit::MAX_OPERATIONS), "loop { }").await;
    assert_eq!(err, exceeded(HookLimit::MAX_OPERATIONS));
    assert_eq!(
        err.to_string(),
        "script 'hostile' exceeded its limit max_operations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_without_an_operation_cap_hits_the_deadline() {
    let err = limit_of(&isolated(HookLimit::TIME), "let n = 0; loop { n += 1; }").await;
    assert_eq!(err, exceeded(HookLimit::TIME));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_doubling_hits_the_string_size_limit() {
    let err = limit_of(
        &isolated(HookLimit::STRING_SIZE),
        r#"let s = "x"; loop { s += s; }"#,
    )
    .await;
    assert_eq!(err, exceeded(HookLimit::STRING_SIZE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_hits_the_call_depth_limit() {
    let source = "fn dive(n) { dive(n + 1) }\nfn before_tool(ctx, call) { dive(0) }";
    let out = isolated(HookLimit::CALL_DEPTH)
        .before_tool(
            &session(vec![script("hostile", source)]),
            &ctx(),
            &call(json!({})),
        )
        .await;
    assert_eq!(out.outcome, Err(exceeded(HookLimit::CALL_DEPTH)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_array_hits_the_array_size_limit() {
    let r = isolated(HookLimit::ARRAY_SIZE);
    assert_eq!(
        limit_of(&r, "let a = []; a.pad(200000, 0);").await,
        exceeded(HookLimit::ARRAY_SIZE)
    );
    assert_eq!(
        limit_of(&r, "let a = [1]; loop { a += a; }").await,
        exceeded(HookLimit::ARRAY_SIZE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_map_hits_the_map_size_limit() {
    let r = runner_with(HookConfig {
        timeout: Duration::from_secs(600),
        max_map_len: 1000,
        ..HookConfig::default()
    });
    assert_eq!(
        limit_of(
            &r,
            "let m = #{}; for i in 0..5000 { m[`k${i}`] = i; } #{ result: m }"
        )
        .await,
        exceeded(HookLimit::MAP_SIZE)
    );
}

/// The three scripts a hostile corpus found making one hook call allocate 1–2.6 GB: each
/// is stopped before it allocates more than the call's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_multipliers_are_refused_before_they_allocate() {
    let r = isolated(HookLimit::STRING_SIZE);
    // 1 MiB of `a`, each to become 1 KiB: a 1 GiB result if built.
    let setup = r#"let s = "a"; while s.len() < 1000000 { s += s; } s.truncate(1000000);
                   let k = "b"; while k.len() < 1000 { k += k; }"#;
    for multiply in [
        "s.replace(\"a\", k);",
        "regex_replace(s, \"a\", k);",
        "regex_replace(s, \"a+\", \"$0$0$0\");",
    ] {
        let err = limit_of(&r, &format!("{setup}\n{multiply}")).await;
        assert_eq!(err, exceeded(HookLimit::STRING_SIZE), "{multiply}");
    }
    // Refused before they allocate: had any result been built (1 GiB or more) and checked
    // afterwards, as the standard helpers do, the limit error would be the same, but this
    // would not. Other tests of this binary allocate a few MiB at the most.
    let largest = crate::LARGEST_ALLOCATION.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest < 64 * 1024 * 1024,
        "an allocation of {largest} bytes was made"
    );
    // Within the limit they still work.
    let out = r
        .on_run_end(
            &session(vec![script(
                "fine",
                r##"fn on_run_end(ctx, output) { let s = "a-b-c"; s.replace("-", "+"); #{ s: s, r: regex_replace("x1y2", "[0-9]", "#") } }"##,
            )]),
            &ctx(),
            &json!({}),
        )
        .await;
    assert_eq!(
        out.outcome.unwrap(),
        Some(json!({"s": "a+b+c", "r": "x#y#"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_large_keys_hits_the_memory_budget() {
    assert!(
        leforge_scripting::alloc::metered(),
        "the test binary installs the counting allocator"
    );
    let r = isolated(HookLimit::MEMORY);
    // Each key is a new 512 KiB string; Rhai's limits count map entries, not key bytes, so
    // this was 2.6 GB for 5000 keys.
    let err = limit_of(
        &r,
        r#"let k = "k"; while k.len() < 500000 { k += k; }
           let m = #{}; for i in 0..5000 { m[k + i] = i; } #{ result: m.len() }"#,
    )
    .await;
    assert_eq!(err, exceeded(HookLimit::MEMORY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_is_not_available() {
    let out = runner()
        .before_tool(
            &session(vec![script(
                "sleepy",
                "fn before_tool(ctx, call) { sleep(3600) }",
            )]),
            &ctx(),
            &call(json!({})),
        )
        .await;
    let err = out.outcome.unwrap_err();
    assert_eq!(err.code(), "HOOK_ERROR");
    assert!(
        err.to_string().contains("sleep is not available in hooks"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_through_a_function_pointer_is_refused() {
    for body in [
        r#"let f = Fn("eval"); f.call("1 + 1")"#,
        r#"call(Fn("eval"), "1 + 1")"#,
    ] {
        let out = runner()
            .on_run_end(
                &session(vec![script(
                    "sneaky",
                    &format!("fn on_run_end(ctx, output) {{ {body} }}"),
                )]),
                &ctx(),
                &json!(null),
            )
            .await;
        let err = out.outcome.expect_err(body);
        assert_eq!(err.code(), "HOOK_ERROR", "{body}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_nested_too_deep_to_return_is_an_error() {
    let out = runner()
        .on_run_end(
            &session(vec![script(
                "deep",
                "fn on_run_end(ctx, output) { let a = (); for i in 0..1000 { a = [a]; } a }",
            )]),
            &ctx(),
            &json!(null),
        )
        .await;
    let err = out.outcome.unwrap_err();
    assert_eq!(err.code(), "HOOK_ERROR");
    assert!(
        err.to_string().contains("nested deeper than 128 levels"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_hook_does_not_hold_up_another_run() {
    let r = runner_with(HookConfig {
        timeout: Duration::from_secs(5),
        max_operations: 0,
        ..HookConfig::default()
    });
    let hostile = {
        let r = r.clone();
        tokio::spawn(async move {
            r.before_tool(
                &session(vec![script(
                    "hostile",
                    "fn before_tool(ctx, call) { loop { } }",
                )]),
                &ctx(),
                &call(json!({})),
            )
            .await
        })
    };
    let fine = r
        .before_tool(
            &session(vec![script(
                "fine",
                "fn before_tool(ctx, call) { #{ deny: \"no\" } }",
            )]),
            &ctx(),
            &call(json!({})),
        )
        .await;
    assert_eq!(
        fine.outcome,
        Ok(leforge_core::hook::BeforeToolOutcome::Deny {
            reason: "no".into()
        })
    );
    // The other call answered while the hostile one was still looping.
    assert!(!hostile.is_finished());
    let hostile = hostile.await.unwrap();
    assert_eq!(hostile.outcome, Err(exceeded(HookLimit::TIME)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_inside_a_caught_block_still_ends_the_call() {
    let err = limit_of(
        &isolated(HookLimit::MAX_OPERATIONS),
        "try { loop { } } catch (e) { return #{ deny: \"caught\" }; }",
    )
    .await;
    assert_eq!(err, exceeded(HookLimit::MAX_OPERATIONS));
}
