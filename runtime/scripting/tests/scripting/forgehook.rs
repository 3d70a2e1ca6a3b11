//! `forgehook(id, endpoint, args)` against the real WASM host with the echo test guest.

use std::sync::Arc;

use leforge_core::hook::{
    BeforeToolOutcome, HookChain, HookError, HookRunner, HookSession, HookTools,
};
use leforge_wasm::{WasmHost, WasmHostConfig};
use serde_json::json;
use tempfile::TempDir;

use super::*;

async fn echo_host() -> (WasmHost, TempDir) {
    let dir = TempDir::new().unwrap();
    let host = WasmHost::new(WasmHostConfig::new(dir.path())).unwrap();
    let prepared = host
        .prepare(&leforge_test_guests::read(leforge_test_guests::ECHO), None)
        .await
        .unwrap();
    host.load_prepared(prepared, Default::default());
    (host, dir)
}

fn with_tools(host: &WasmHost, allowed: &[&str], source: &str) -> HookSession {
    HookSession {
        chain: HookChain::new([], [script("caller", source)]),
        tools: Some(HookTools::new(
            Arc::new(host.clone()),
            allowed.iter().map(|s| s.to_string()).collect(),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgehook_calls_an_allowed_forgehook() {
    let (host, _dir) = echo_host().await;
    let s = with_tools(
        &host,
        &["echo"],
        r#"fn before_tool(ctx, call) {
            let out = forgehook("echo", "echo", #{ message: "from a hook", data: call.args });
            #{ result: out }
        }"#,
    );
    let out = runner()
        .before_tool(&s, &ctx(), &call(json!({"n": [1, 2]})))
        .await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Result {
            result: json!({"message": "from a hook", "data": {"n": [1, 2]}})
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgehook_refuses_a_forgehook_outside_the_agents_tools() {
    let (host, _dir) = echo_host().await;
    // Loaded in the host, but not in this agent's tools.
    let s = with_tools(
        &host,
        &["json-utils"],
        r#"fn before_tool(ctx, call) { forgehook("echo", "echo", #{ message: "x" }) }"#,
    );
    let out = runner().before_tool(&s, &ctx(), &call(json!({}))).await;
    assert_eq!(
        out.outcome,
        Err(HookError::Runtime {
            script: "caller".into(),
            line: Some(1),
            column: Some(29),
            message: "forgehook: ForgeHook 'echo' is not in the agent's tools (NOT_ALLOWED)".into(),
        })
    );

    // Scripts can catch the refusal and decide for themselves.
    let s = with_tools(
        &host,
        &[],
        r#"fn before_tool(ctx, call) {
            try { forgehook("echo", "echo", #{ message: "x" }) } catch (e) { return #{ deny: e.code }; }
        }"#,
    );
    let out = runner().before_tool(&s, &ctx(), &call(json!({}))).await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Deny {
            reason: "NOT_ALLOWED".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_forgehook_call_surfaces_the_tool_error_code() {
    let (host, _dir) = echo_host().await;
    let s = with_tools(
        &host,
        &["echo"],
        r#"fn before_tool(ctx, call) {
            try { forgehook("echo", "echo", #{ not_message: 1 }) } catch (e) { return #{ deny: e.code }; }
        }"#,
    );
    let out = runner().before_tool(&s, &ctx(), &call(json!({}))).await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Deny {
            reason: "INVALID_INPUT".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgehook_without_tools_is_not_available() {
    let out = runner()
        .test_hook(
            &script(
                "t",
                r#"fn on_run_end(ctx, output) { forgehook("echo", "echo", #{}) }"#,
            ),
            "on_run_end",
            vec![json!({}), json!(null)],
            None,
        )
        .await;
    let err = out.outcome.unwrap_err();
    assert!(err.to_string().contains("(NOT_AVAILABLE)"), "{err}");
}
