//! The sign-in page and the page shown when a page's subject is missing or fails to load.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::layout;
use super::session::UiSession;
use crate::error::ApiError;

pub fn signin(token: &str, next: Option<&str>, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "LeForge admin" }
            p { "Sign in with an admin API key. It is checked by the server and never stored in the browser; "
                "the session ends when you sign out, after two idle hours, or when the key is revoked." }
            @if let Some(message) = error {
                div.form-error role="alert" id="signin-error" { (message) }
            }
            form method="post" action="/signin" id="signin-form" {
                input type="hidden" name="csrf" value=(token);
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                label for="key" { "Admin API key" }
                input id="key" name="key" type="password" autocomplete="off" required
                    spellcheck="false" placeholder="lf_…" autofocus;
                div.actions { button type="submit" id="signin" { "Sign in" } }
            }
        },
    )
}

/// An error page inside the shell: the API's own error (status and message) for a page whose
/// subject could not be loaded.
pub fn error(session: &UiSession, title: &str, e: ApiError) -> Response {
    let status = e.status;
    let mut resp = layout::page(
        title,
        "error",
        "",
        session,
        html! {
            h1 { (title) }
            div.form-error role="alert" {
                strong { (e.code) } ": " (e.message)
            }
            p { a href="/agents" { "Back to agents" } }
        },
    );
    *resp.status_mut() = if status.is_success() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        status
    };
    resp.into_response()
}
