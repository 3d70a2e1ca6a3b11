//! Rhai scripts: list, create, edit with line numbers and compile errors at their line, and
//! test a hook. These pages are shells that the script fills from `/api/v1/scripts`, so they
//! show exactly what the scripts API says, errors included.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};

use super::layout::{self, field_error, form_error};
use super::session::UiSession;
use crate::state::AppState;

pub async fn list(State(_state): State<AppState>, session: UiSession) -> Response {
    let body = html! {
        div.page-head {
            h1 { "Scripts" }
            a.button.primary href="/scripts/new" #new-script { "New script" }
        }
        (form_error("scripts-error"))
        p.empty #scripts-empty hidden { "No scripts yet." }
        div.table-wrap {
            table.stack #scripts-table hidden {
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Description" }
                    th scope="col" { "Version" }
                    th scope="col" { "Updated" }
                } }
                tbody {}
            }
        }
    };
    layout::page("Scripts", "scripts", "/scripts", &session, body)
}

pub async fn new(State(_state): State<AppState>, session: UiSession) -> Response {
    layout::page(
        "New script",
        "script-edit",
        "/scripts",
        &session,
        editor(None),
    )
}

pub async fn edit(
    State(_state): State<AppState>,
    session: UiSession,
    Path(id_or_name): Path<String>,
) -> Response {
    layout::page(
        "Edit script",
        "script-edit",
        "/scripts",
        &session,
        editor(Some(&id_or_name)),
    )
}

fn editor(script: Option<&str>) -> Markup {
    html! {
        h1 #script-title { @if script.is_some() { "Edit script" } @else { "New script" } }
        form #script-form novalidate data-script=[script] {
            (form_error("script-form-error"))
            label for="script-name" { "Name" }
            input #script-name name="name" required maxlength="255" autocomplete="off" aria-describedby="err-name";
            (field_error("name"))
            label for="script-description" { "Description " span.hint { "(optional)" } }
            input #script-description name="description" autocomplete="off" aria-describedby="err-description";
            (field_error("description"))
            label for="script-source" { "Rhai source" }
            div.editor {
                pre.gutter #script-gutter aria-hidden="true" { "1" }
                textarea #script-source.code name="source" rows="18" spellcheck="false" wrap="off"
                    aria-describedby="script-errors err-source" {}
            }
            (field_error("source"))
            ul.compile-errors #script-errors role="alert" {}
            div.actions {
                button.primary type="submit" #script-save { "Save" }
                @if script.is_some() {
                    button.danger type="button" #script-delete { "Delete" }
                }
                a.button href="/scripts" { "Back to scripts" }
            }
            p.ok #script-ok role="status" hidden {}
        }
        @if script.is_some() {
            section.panel #script-test-panel {
                h2 { "Test a hook" }
                form #script-test novalidate {
                    (form_error("script-test-error"))
                    label for="test-hook" { "Hook" }
                    select #test-hook name="hook" {
                        option value="on_run_start" { "on_run_start(ctx)" }
                        option value="before_tool" selected { "before_tool(ctx, call)" }
                        option value="after_tool" { "after_tool(ctx, call, result)" }
                        option value="on_run_end" { "on_run_end(ctx, output)" }
                    }
                    label for="test-args" { "Arguments (a JSON array)" }
                    textarea #test-args.code name="args" rows="6" spellcheck="false" aria-describedby="err-args" {
                        "[{\"input\": \"hello\"}, {\"tool\": \"data-transform\", \"action\": \"csv_to_json\", \"name\": \"data-transform__csv_to_json\", \"args\": {}}]"
                    }
                    (field_error("args"))
                    div.actions { button type="submit" #test-run { "Run hook" } }
                    pre.json #test-result hidden {}
                }
            }
        }
    }
}
