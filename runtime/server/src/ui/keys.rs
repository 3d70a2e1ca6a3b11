//! API keys: the list (name, prefix, scope, last used), creation with the key shown once,
//! and revocation.

use axum::extract::State;
use axum::response::Response;
use leforge_core::PageRequest;
use maud::html;

use super::layout::{self, field_error, form_error};
use super::pages;
use super::session::UiSession;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, session: UiSession) -> Response {
    let keys = match state
        .store
        .list_api_keys(PageRequest {
            limit: 200,
            after: None,
        })
        .await
    {
        Ok(k) => k.items,
        Err(e) => return pages::error(&session, "API keys", e.into()),
    };
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "never".into())
    };
    let body = html! {
        h1 { "API keys" }
        section.panel {
            h2 { "New key" }
            form #key-form novalidate {
                (form_error("key-form-error"))
                div.row {
                    div {
                        label for="key-name" { "Name" }
                        input #key-name name="name" required maxlength="255" aria-describedby="err-name";
                        (field_error("name"))
                    }
                    div {
                        label for="key-scope" { "Scope" }
                        select #key-scope name="scope" aria-describedby="err-scope" {
                            option value="invoke" selected { "invoke — run agents, read own runs" }
                            option value="admin" { "admin — everything" }
                        }
                        (field_error("scope"))
                    }
                }
                div.actions { button.primary type="submit" #key-create { "Create key" } }
            }
            div.created #key-created role="status" hidden {
                p { strong { "Copy this key now. " } "It is stored only as a hash and will not be shown again." }
                div.copy-row {
                    label.visually-hidden for="key-plain" { "New API key" }
                    input #key-plain readonly spellcheck="false";
                    button type="button" #key-copy data-copy="key-plain" { "Copy" }
                }
                p.hint #key-copied aria-live="polite" {}
            }
        }
        (form_error("keys-error"))
        div.table-wrap {
            table.stack #keys-table {
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Prefix" }
                    th scope="col" { "Scope" }
                    th scope="col" { "Created" }
                    th scope="col" { "Last used" }
                    th scope="col" { "State" }
                } }
                tbody {
                    @for k in &keys {
                        tr data-key=(k.id) {
                            td.wrap data-label="Name" { (k.name) }
                            td data-label="Prefix" { code { (k.prefix) "…" } }
                            td data-label="Scope" { span.badge { (k.scope.as_str()) } }
                            td data-label="Created" { (fmt(Some(k.created_at))) }
                            td data-label="Last used" { (fmt(k.last_used_at)) }
                            td data-label="State" {
                                @if let Some(r) = k.revoked_at {
                                    span.badge.disabled { "revoked " (r.format("%Y-%m-%d")) }
                                } @else {
                                    button.danger type="button" data-revoke-key=(k.id) data-name=(k.name) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page("API keys", "keys", "/keys", &session, body)
}
