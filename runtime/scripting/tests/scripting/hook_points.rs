//! Each hook point and each return form, chain order, errors with positions, logs, helpers,
//! caching, imports and `test_hook`.

use std::collections::HashMap;
use std::sync::Arc;

use leforge_core::hook::{
    BeforeToolOutcome, HookChain, HookError, HookLog, HookLogLevel, HookPoint, HookRecordOutcome,
    HookRunner, HookScript, HookSession, RunStartOutcome,
};
use leforge_scripting::{HookConfig, RhaiHookRunner, ScriptError, ScriptLibrary};
use serde_json::json;

use super::*;

#[tokio::test]
async fn on_run_start_returning_unit_changes_nothing() {
    let s = script("noop", "fn on_run_start(ctx) { }");
    let out = runner().on_run_start(&session(vec![s]), &ctx()).await;
    assert_eq!(out.outcome, Ok(RunStartOutcome::default()));
    assert_eq!(
        outcomes(&out.records),
        [("noop".to_string(), HookRecordOutcome::Unchanged)]
    );
    assert_eq!(out.records[0].hook, HookPoint::OnRunStart);
    assert_eq!(out.records[0].script_version, 1);
}

#[tokio::test]
async fn on_run_start_replaces_input_and_data() {
    let s = script(
        "rewrite",
        r#"fn on_run_start(ctx) { #{ input: ctx.input + " (via " + ctx.agent.slug + ")", data: #{ n: 1 } } }"#,
    );
    let out = runner().on_run_start(&session(vec![s]), &ctx()).await;
    assert_eq!(
        out.outcome,
        Ok(RunStartOutcome {
            input: Some("hello (via support-bot)".into()),
            data: Some(json!({"n": 1})),
        })
    );
    assert_eq!(
        out.records[0].outcome,
        HookRecordOutcome::Replaced {
            changes: json!({"input": "hello (via support-bot)", "data": {"n": 1}})
        }
    );
}

#[tokio::test]
async fn on_run_start_may_replace_only_data() {
    let s = script("data", "fn on_run_start(ctx) { #{ data: () } }");
    let out = runner().on_run_start(&session(vec![s]), &ctx()).await;
    assert_eq!(
        out.outcome,
        Ok(RunStartOutcome {
            input: None,
            data: Some(serde_json::Value::Null),
        })
    );
}

#[tokio::test]
async fn throw_in_on_run_start_rejects_the_run() {
    let s = script(
        "gate",
        r#"fn on_run_start(ctx) { if ctx.step == 3 { throw "not during maintenance"; } }"#,
    );
    let out = runner().on_run_start(&session(vec![s]), &ctx()).await;
    let err = out.outcome.unwrap_err();
    assert_eq!(err.code(), "HOOK_REJECTED");
    assert_eq!(
        err,
        HookError::Rejected {
            script: "gate".into(),
            hook: HookPoint::OnRunStart,
            reason: "not during maintenance".into(),
        }
    );
    assert_eq!(
        out.records[0].outcome,
        HookRecordOutcome::Rejected {
            reason: "not during maintenance".into()
        }
    );
}

#[tokio::test]
async fn a_thrown_map_rejects_with_its_message() {
    let s = script(
        "gate",
        r#"fn before_tool(ctx, call) { throw #{ status: 403, message: "no tools today" }; }"#,
    );
    let out = runner()
        .before_tool(&session(vec![s]), &ctx(), &call(json!({})))
        .await;
    assert_eq!(
        out.outcome,
        Err(HookError::Rejected {
            script: "gate".into(),
            hook: HookPoint::BeforeTool,
            reason: "no tools today".into(),
        })
    );
}

#[tokio::test]
async fn on_run_start_return_of_the_wrong_shape_is_a_hook_error() {
    for (source, expected) in [
        ("fn on_run_start(ctx) { 42 }", "on_run_start must return (), or a map with `input` and/or `data`; it returned a number"),
        ("fn on_run_start(ctx) { #{ inptu: \"x\" } }", "on_run_start must return (), or a map with `input` and/or `data`; it returned a map with keys [inptu]"),
        ("fn on_run_start(ctx) { #{ input: 1 } }", "on_run_start returned `input` as a number; it must be a string"),
    ] {
        let out = runner().on_run_start(&session(vec![script("bad", source)]), &ctx()).await;
        assert_eq!(
            out.outcome,
            Err(HookError::Runtime {
                script: "bad".into(),
                line: None,
                column: None,
                message: expected.into(),
            }),
            "{source}"
        );
        assert_eq!(out.outcome.unwrap_err().code(), "HOOK_ERROR");
        assert!(matches!(&out.records[0].outcome, HookRecordOutcome::Failed { code, .. } if code == "HOOK_ERROR"));
    }
}

#[tokio::test]
async fn before_tool_returning_unit_proceeds_unchanged() {
    let s = script("noop", "fn before_tool(ctx, call) { () }");
    let out = runner()
        .before_tool(&session(vec![s]), &ctx(), &call(json!({"a": 1})))
        .await;
    assert_eq!(out.outcome, Ok(BeforeToolOutcome::Proceed { args: None }));
    assert_eq!(out.records[0].outcome, HookRecordOutcome::Unchanged);
}

#[tokio::test]
async fn before_tool_replaces_the_arguments() {
    let s = script(
        "args",
        "fn before_tool(ctx, call) { let a = call.args; a.limit = 10; #{ args: a } }",
    );
    let out = runner()
        .before_tool(&session(vec![s]), &ctx(), &call(json!({"q": "x"})))
        .await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Proceed {
            args: Some(json!({"q": "x", "limit": 10}))
        })
    );
    assert_eq!(
        out.records[0].outcome,
        HookRecordOutcome::Replaced {
            changes: json!({"args": {"q": "x", "limit": 10}})
        }
    );
}

#[tokio::test]
async fn before_tool_deny_ends_the_chain() {
    let deny = script(
        "deny",
        r#"fn before_tool(ctx, call) { if call.tool == "echo" { #{ deny: "echo is off" } } }"#,
    );
    let later = script("later", "fn before_tool(ctx, call) { #{ args: #{} } }");
    let out = runner()
        .before_tool(&session(vec![deny, later]), &ctx(), &call(json!({})))
        .await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Deny {
            reason: "echo is off".into()
        })
    );
    assert_eq!(
        outcomes(&out.records),
        [(
            "deny".to_string(),
            HookRecordOutcome::Denied {
                reason: "echo is off".into()
            }
        )]
    );
}

#[tokio::test]
async fn before_tool_result_skips_the_tool() {
    let s = script(
        "cache",
        r#"fn before_tool(ctx, call) { #{ result: #{ cached: true, q: call.args.q } } }"#,
    );
    let out = runner()
        .before_tool(&session(vec![s]), &ctx(), &call(json!({"q": "x"})))
        .await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Result {
            result: json!({"cached": true, "q": "x"})
        })
    );
}

#[tokio::test]
async fn before_tool_return_of_the_wrong_shape_is_a_hook_error() {
    for (source, got) in [
        (
            "fn before_tool(ctx, call) { #{ deny: \"a\", result: 1 } }",
            "a map with keys [deny, result]",
        ),
        (
            "fn before_tool(ctx, call) { #{ deny: 1 } }",
            "a map with keys [deny]",
        ),
        ("fn before_tool(ctx, call) { true }", "a boolean"),
    ] {
        let out = runner()
            .before_tool(
                &session(vec![script("bad", source)]),
                &ctx(),
                &call(json!({})),
            )
            .await;
        assert_eq!(
            out.outcome,
            Err(HookError::Runtime {
                script: "bad".into(),
                line: None,
                column: None,
                message: format!(
                    "before_tool must return (), #{{args: …}}, #{{deny: \"reason\"}} or #{{result: …}}; it returned {got}"
                ),
            }),
            "{source}"
        );
    }
}

#[tokio::test]
async fn after_tool_keeps_or_replaces_the_result() {
    let keep = script("keep", "fn after_tool(ctx, call, result) { }");
    let out = runner()
        .after_tool(
            &session(vec![keep]),
            &ctx(),
            &call(json!({})),
            &json!({"v": 1}),
        )
        .await;
    assert_eq!(out.outcome, Ok(None));

    let replace = script(
        "replace",
        "fn after_tool(ctx, call, result) { result.v += 1; result }",
    );
    let out = runner()
        .after_tool(
            &session(vec![replace.clone(), replace]),
            &ctx(),
            &call(json!({})),
            &json!({"v": 1}),
        )
        .await;
    // The same script listed twice runs once.
    assert_eq!(out.outcome, Ok(Some(json!({"v": 2}))));
    assert_eq!(out.records.len(), 1);

    let a = script(
        "a",
        "fn after_tool(ctx, call, result) { result.v += 1; result }",
    );
    let b = script(
        "b",
        "fn after_tool(ctx, call, result) { result.v *= 10; result }",
    );
    let out = runner()
        .after_tool(
            &session(vec![a, b]),
            &ctx(),
            &call(json!({})),
            &json!({"v": 1}),
        )
        .await;
    assert_eq!(out.outcome, Ok(Some(json!({"v": 20}))));
    assert_eq!(
        out.records[1].outcome,
        HookRecordOutcome::Replaced {
            changes: json!({"result": {"v": 20}})
        }
    );
}

#[tokio::test]
async fn on_run_end_keeps_or_replaces_the_output() {
    let keep = script("keep", "fn on_run_end(ctx, output) { () }");
    let out = runner()
        .on_run_end(&session(vec![keep]), &ctx(), &json!("done"))
        .await;
    assert_eq!(out.outcome, Ok(None));
    let upper = script("upper", "fn on_run_end(ctx, output) { output.to_upper() }");
    let out = runner()
        .on_run_end(&session(vec![upper]), &ctx(), &json!("done"))
        .await;
    assert_eq!(out.outcome, Ok(Some(json!("DONE"))));
    assert_eq!(
        out.records[0].outcome,
        HookRecordOutcome::Replaced {
            changes: json!({"output": "DONE"})
        }
    );
}

#[tokio::test]
async fn global_scripts_run_before_the_agents_and_each_sees_the_last_change() {
    let global = script(
        "global",
        r#"fn on_run_start(ctx) { #{ input: ctx.input + " +global" } }"#,
    );
    let agent = script(
        "agent",
        r#"fn on_run_start(ctx) { #{ input: ctx.input + " +agent" } }"#,
    );
    let session = HookSession {
        chain: HookChain::new([global], [agent]),
        tools: None,
    };
    let out = runner().on_run_start(&session, &ctx()).await;
    assert_eq!(
        out.outcome.unwrap().input.as_deref(),
        Some("hello +global +agent")
    );
    let order: Vec<_> = out.records.iter().map(|r| r.script.as_str()).collect();
    assert_eq!(order, ["global", "agent"]);
}

#[tokio::test]
async fn scripts_that_do_not_define_a_hook_are_skipped_without_a_record() {
    let only_end = script("only_end", "fn on_run_end(ctx, output) { 1 }");
    let out = runner()
        .before_tool(&session(vec![only_end]), &ctx(), &call(json!({})))
        .await;
    assert_eq!(out.outcome, Ok(BeforeToolOutcome::Proceed { args: None }));
    assert!(out.records.is_empty());
    let out = runner().on_run_start(&HookSession::default(), &ctx()).await;
    assert_eq!(out.outcome, Ok(RunStartOutcome::default()));
}

#[tokio::test]
async fn scripts_see_the_context_and_the_call() {
    let s = script(
        "echo",
        "fn before_tool(ctx, call) { #{ result: #{ ctx: ctx, call: call } } }",
    );
    let out = runner()
        .before_tool(
            &session(vec![s]),
            &ctx(),
            &call(json!({"q": [1, 2.5, null]})),
        )
        .await;
    let BeforeToolOutcome::Result { result } = out.outcome.unwrap() else {
        panic!("not a result")
    };
    assert_eq!(
        result,
        json!({
            "ctx": {
                "agent": {"id": "00000000-0000-0000-0000-000000000007", "slug": "support-bot", "name": "Support bot"},
                "run_id": "00000000-0000-0000-0000-00000000002a",
                "input": "hello",
                "data": {"customer": "c-1"},
                "step": 3,
                "metadata": {"triggered_by": "key-1"},
            },
            "call": {"tool": "echo", "action": "echo", "name": "echo__echo", "args": {"q": [1, 2.5, null]}},
        })
    );
}

#[test]
fn a_syntax_error_has_its_line_and_column() {
    let errors =
        leforge_scripting::compile("fn before_tool(ctx, call) {\n    let x = ;\n}\n").unwrap_err();
    assert_eq!(
        errors,
        [ScriptError {
            line: 2,
            column: 13,
            message: "Unexpected ';'".into()
        }]
    );
}

#[test]
fn a_hook_with_the_wrong_parameters_does_not_compile() {
    let errors =
        leforge_scripting::compile("// audit\n\nfn after_tool(ctx, result) { }\n").unwrap_err();
    assert_eq!(
        errors,
        [ScriptError {
            line: 3,
            column: 1,
            message: "the hook after_tool must take 3 parameter(s): after_tool(ctx, call, result)"
                .into(),
        }]
    );
}

#[test]
fn eval_does_not_compile() {
    let errors =
        leforge_scripting::compile("fn on_run_end(ctx, output) { eval(\"40 + 2\") }").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].column), (1, 30));
    assert!(errors[0].message.contains("eval"), "{}", errors[0].message);
}

#[test]
fn too_deep_an_expression_does_not_compile() {
    let source = format!(
        "fn on_run_end(ctx, output) {{ {}1{} }}",
        "(".repeat(200),
        ")".repeat(200)
    );
    let errors = leforge_scripting::compile(&source).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("complex"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn a_runtime_error_names_the_script_line_and_column() {
    let s = script(
        "broken",
        "fn before_tool(ctx, call) {\n    let n = 1;\n    n.no_such_method()\n}\n",
    );
    let out = runner()
        .before_tool(&session(vec![s]), &ctx(), &call(json!({})))
        .await;
    let err = out.outcome.unwrap_err();
    assert_eq!(err.code(), "HOOK_ERROR");
    let HookError::Runtime {
        script,
        line,
        column,
        message,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (script.as_str(), line, column),
        ("broken", Some(3), Some(7))
    );
    assert!(message.contains("no_such_method"), "{message}");
}

#[tokio::test]
async fn logs_and_print_are_captured_in_order() {
    let s = script(
        "chatty",
        r#"fn on_run_end(ctx, output) { log_info("a"); print("b"); log_warn(#{ n: 1 }); log_error(42); }"#,
    );
    let out = runner()
        .on_run_end(&session(vec![s]), &ctx(), &json!(null))
        .await;
    let logs = &out.records[0].logs;
    assert_eq!(
        logs,
        &[
            HookLog {
                level: HookLogLevel::Info,
                message: "a".into()
            },
            HookLog {
                level: HookLogLevel::Info,
                message: "b".into()
            },
            HookLog {
                level: HookLogLevel::Warn,
                message: "#{\"n\": 1}".into()
            },
            HookLog {
                level: HookLogLevel::Error,
                message: "42".into()
            },
        ]
    );
}

#[tokio::test]
async fn log_lines_past_the_cap_are_counted_not_kept() {
    let r = runner_with(HookConfig {
        max_log_lines: 2,
        ..HookConfig::default()
    });
    let s = script(
        "flood",
        "fn on_run_end(ctx, output) { for i in 0..10 { log_info(`line ${i}`); } }",
    );
    let out = r.on_run_end(&session(vec![s]), &ctx(), &json!(null)).await;
    let messages: Vec<_> = out.records[0]
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(messages, ["line 0", "line 1", "8 more log line(s) dropped"]);
}

async fn test(
    source: &str,
    hook: &str,
    args: Vec<serde_json::Value>,
) -> Result<serde_json::Value, HookError> {
    runner()
        .test_hook(&script("t", source), hook, args, None)
        .await
        .outcome
}

#[tokio::test]
async fn json_and_regex_helpers() {
    let out = test(
        r##"fn on_run_end(ctx, output) {
            let v = json_parse(output);
            #{
                parsed: v,
                text: json_stringify(#{ a: [1, true, ()] }),
                matches: regex_match("order 1234", "\\d{4}"),
                misses: regex_match("order", "\\d"),
                replaced: regex_replace("a1b22", "\\d+", "#"),
            }
        }"##,
        "on_run_end",
        vec![json!({}), json!("{\"x\": [1, 2]}")],
    )
    .await;
    assert_eq!(
        out,
        Ok(json!({
            "parsed": {"x": [1, 2]},
            "text": "{\"a\":[1,true,null]}",
            "matches": true,
            "misses": false,
            "replaced": "a#b#",
        }))
    );
}

#[tokio::test]
async fn now_iso_is_an_rfc3339_utc_timestamp() {
    let out = test(
        "fn on_run_end(ctx, output) { now_iso() }",
        "on_run_end",
        vec![json!({}), json!(null)],
    )
    .await
    .unwrap();
    let text = out.as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{text}");
    assert!(text.ends_with('Z'), "{text}");
}

#[tokio::test]
async fn an_invalid_regex_is_a_hook_error_not_a_rejection() {
    let err = test(
        r#"fn on_run_end(ctx, output) {
    regex_match("x", "(unclosed")
}"#,
        "on_run_end",
        vec![json!({}), json!(null)],
    )
    .await
    .unwrap_err();
    let HookError::Runtime { line, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, Some(2));
    assert!(
        message.starts_with("regex_match: regex parse error"),
        "{message}"
    );
    assert!(message.ends_with("(INVALID_REGEX)"), "{message}");
}

#[tokio::test]
async fn helper_errors_can_be_caught() {
    let out = test(
        r#"fn on_run_end(ctx, output) {
            try { json_parse("{nope") } catch (e) { return #{ code: e.code, helper: e.helper }; }
        }"#,
        "on_run_end",
        vec![json!({}), json!(null)],
    )
    .await;
    assert_eq!(
        out,
        Ok(json!({"code": "INVALID_JSON", "helper": "json_parse"}))
    );
}

#[tokio::test]
async fn a_huge_regex_is_refused() {
    let err = test(
        r#"fn on_run_end(ctx, output) { regex_match("x", "(a{1000}){1000}") }"#,
        "on_run_end",
        vec![json!({}), json!(null)],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("(INVALID_REGEX)"), "{err}");
}

#[tokio::test]
async fn test_hook_reports_unknown_hooks_bad_arguments_and_missing_hooks() {
    let r = runner();
    let s = script("t", "fn on_run_end(ctx, output) { output }");
    let msg = |out: Result<serde_json::Value, HookError>| match out {
        Err(HookError::Runtime { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        msg(r.test_hook(&s, "before_all", vec![], None).await.outcome),
        "unknown hook 'before_all'; expected on_run_start, before_tool, after_tool or on_run_end"
    );
    assert_eq!(
        msg(r
            .test_hook(&s, "on_run_end", vec![json!({})], None)
            .await
            .outcome),
        "on_run_end(ctx, output) takes 2 arguments, 1 given"
    );
    assert_eq!(
        msg(r
            .test_hook(&s, "before_tool", vec![json!({}), json!({})], None)
            .await
            .outcome),
        "the script does not define before_tool(ctx, call)"
    );
    let ok = r
        .test_hook(&s, "on_run_end", vec![json!({}), json!([1])], None)
        .await;
    assert_eq!(ok.outcome, Ok(json!([1])));
}

#[tokio::test]
async fn a_new_version_of_a_script_replaces_the_cached_one() {
    let r = runner();
    let mut s = script("v", "fn on_run_end(ctx, output) { 1 }");
    let out = r
        .on_run_end(&session(vec![s.clone()]), &ctx(), &json!(null))
        .await;
    assert_eq!(out.outcome, Ok(Some(json!(1))));
    s.version = 2;
    s.source = Arc::from("fn on_run_end(ctx, output) { 2 }");
    let out = r
        .on_run_end(&session(vec![s.clone()]), &ctx(), &json!(null))
        .await;
    assert_eq!(out.outcome, Ok(Some(json!(2))));
    assert_eq!(out.records[0].script_version, 2);
}

struct Library(HashMap<String, HookScript>);

impl ScriptLibrary for Library {
    fn script(&self, name: &str) -> Option<HookScript> {
        self.0.get(name).cloned()
    }
}

fn library(scripts: &[(&str, &str)]) -> RhaiHookRunner {
    let map = scripts
        .iter()
        .map(|(n, s)| (n.to_string(), script(n, s)))
        .collect();
    RhaiHookRunner::with_library(HookConfig::default(), Arc::new(Library(map))).unwrap()
}

#[tokio::test]
async fn import_resolves_stored_scripts_only() {
    let r = library(&[("wrap", "fn wrap(v) { #{ wrapped: v } }")]);
    let s = script(
        "main",
        r#"import "wrap" as w; fn on_run_end(ctx, output) { w::wrap(output) }"#,
    );
    let out = r.on_run_end(&session(vec![s]), &ctx(), &json!(5)).await;
    assert_eq!(out.outcome, Ok(Some(json!({"wrapped": 5}))));

    let s = script(
        "main",
        r#"import "/etc/passwd" as p; fn on_run_end(ctx, output) { 1 }"#,
    );
    let out = r
        .on_run_end(&session(vec![s.clone()]), &ctx(), &json!(5))
        .await;
    let err = out.outcome.unwrap_err();
    assert_eq!(err.code(), "HOOK_ERROR");
    assert!(err.to_string().contains("/etc/passwd"), "{err}");

    // Without a library nothing can be imported.
    let out = runner()
        .on_run_end(&session(vec![s]), &ctx(), &json!(5))
        .await;
    assert_eq!(out.outcome.unwrap_err().code(), "HOOK_ERROR");
}

#[tokio::test]
async fn an_import_cycle_is_an_error_not_a_crash() {
    let r = library(&[
        ("a", r#"import "b" as b; fn x() { 1 }"#),
        ("b", r#"import "a" as a; fn y() { 2 }"#),
    ]);
    let s = script(
        "main",
        r#"import "a" as a; fn on_run_end(ctx, output) { a::x() }"#,
    );
    let out = r.on_run_end(&session(vec![s]), &ctx(), &json!(5)).await;
    let err = out.outcome.unwrap_err();
    assert_eq!(err.code(), "HOOK_ERROR");
    assert!(
        err.to_string().contains("import cycle: a -> b -> a"),
        "{err}"
    );
}

#[tokio::test]
async fn an_error_in_an_imported_script_is_placed_in_that_script() {
    let r = library(&[("lib", "fn boom() {\n    let m = #{};\n    m.x.y\n}")]);
    let s = script(
        "main",
        r#"import "lib" as lib; fn on_run_end(ctx, output) { lib::boom() }"#,
    );
    let out = r.on_run_end(&session(vec![s]), &ctx(), &json!(5)).await;
    let HookError::Runtime { script, line, .. } = out.outcome.unwrap_err() else {
        panic!()
    };
    assert_eq!((script.as_str(), line), ("lib", Some(3)));
}
