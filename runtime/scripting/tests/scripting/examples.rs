//! The example scripts in scripts/, through the HookRunner API.

use leforge_core::hook::{
    BeforeToolOutcome, HookLogLevel, HookRecordOutcome, HookRunner, RunStartOutcome,
};
use serde_json::json;

use super::*;

#[tokio::test]
async fn redact_pii_masks_emails_and_phone_numbers_in_input_and_data() {
    let mut c = ctx();
    c.input = "Mail jane.doe@example.com or call +1 (555) 123-4567 about order 2024-06.".into();
    c.data = json!({
        "customer": {"email": "bob@corp.io", "phones": ["555.987.6543", "n/a"], "age": 41},
        "note": "reach me at x_y@mail.example.org",
    });
    let out = runner()
        .on_run_start(&session(vec![example("redact_pii")]), &c)
        .await;
    assert_eq!(
        out.outcome,
        Ok(RunStartOutcome {
            input: Some("Mail [email] or call [phone] about order 2024-06.".into()),
            data: Some(json!({
                "customer": {"email": "[email]", "phones": ["[phone]", "n/a"], "age": 41},
                "note": "reach me at [email]",
            })),
        })
    );
}

#[tokio::test]
async fn deny_large_batches_denies_more_than_100_records_only() {
    let s = session(vec![example("deny_large_batches")]);
    let rows = |n: usize| json!({"records": vec![json!({"id": 1}); n]});
    let out = runner().before_tool(&s, &ctx(), &call(rows(101))).await;
    assert_eq!(
        out.outcome,
        Ok(BeforeToolOutcome::Deny {
            reason: "echo__echo: 101 records exceed the limit of 100 per call".into()
        })
    );
    for args in [
        rows(100),
        json!({"records": "not an array"}),
        json!({}),
        json!([1, 2]),
    ] {
        let out = runner().before_tool(&s, &ctx(), &call(args.clone())).await;
        assert_eq!(
            out.outcome,
            Ok(BeforeToolOutcome::Proceed { args: None }),
            "{args}"
        );
    }
}

#[tokio::test]
async fn totals_envelope_wraps_the_output() {
    let out = runner()
        .on_run_end(
            &session(vec![example("totals_envelope")]),
            &ctx(),
            &json!({"total": 12.5}),
        )
        .await;
    let value = out.outcome.unwrap().unwrap();
    assert_eq!(value["result"], json!({"total": 12.5}));
    let at = value["generated_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(value.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn audit_log_logs_the_tool_and_argument_keys_and_changes_nothing() {
    let out = runner()
        .before_tool(
            &session(vec![example("audit_log")]),
            &ctx(),
            &call(json!({"query": "secret", "limit": 5})),
        )
        .await;
    assert_eq!(out.outcome, Ok(BeforeToolOutcome::Proceed { args: None }));
    let record = &out.records[0];
    assert_eq!(record.outcome, HookRecordOutcome::Unchanged);
    assert_eq!(record.logs.len(), 1);
    assert_eq!(record.logs[0].level, HookLogLevel::Info);
    assert_eq!(
        record.logs[0].message,
        "step 3: echo__echo (echo/echo) args: [limit, query]"
    );
}
