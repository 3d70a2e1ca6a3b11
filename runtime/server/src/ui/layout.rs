//! The page shell (navigation, sign-out, CSRF meta tag) and small shared fragments.

use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::session::UiSession;

pub fn html(markup: Markup) -> Html<String> {
    Html(markup.into_string())
}

const NAV: [(&str, &str); 6] = [
    ("/agents", "Agents"),
    ("/runs", "History"),
    ("/forgehooks", "ForgeHooks"),
    ("/mcp-servers", "MCP servers"),
    ("/scripts", "Scripts"),
    ("/keys", "API keys"),
];

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · LeForge" }
            @if let Some(token) = csrf {
                meta name="csrf-token" content=(token);
            }
            link rel="stylesheet" href="/ui/static/app.css";
            script src="/ui/static/app.js" defer {}
        }
    }
}

/// A page for a signed-in admin. `page` names the script's handler for this page.
pub fn page(title: &str, page: &str, active: &str, session: &UiSession, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, Some(&session.csrf)))
            body data-page=(page) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/agents" { "LeForge" }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label) in NAV {
                                li {
                                    @if href == active {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/signout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" id="signout" { "Sign out" }
                    }
                }
                main id="main" tabindex="-1" {
                    (body)
                }
                (confirm_dialog())
            }
        }
    };
    html(markup).into_response()
}

/// A bare page (sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body data-page="signin" {
                main id="main" .narrow { (body) }
            }
        }
    }
}

/// One dialog reused by every "are you sure" (keyboard accessible, unlike a custom overlay).
fn confirm_dialog() -> Markup {
    html! {
        dialog id="confirm" aria-labelledby="confirm-title" {
            form method="dialog" {
                h2 id="confirm-title" { "Are you sure?" }
                p id="confirm-text" {}
                div.actions {
                    button value="cancel" id="confirm-cancel" { "Cancel" }
                    button.danger value="ok" id="confirm-ok" { "Delete" }
                }
            }
        }
    }
}

/// Pretty JSON in a scrolling block.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (text) } }
}

pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status) } }
}

/// An error box the script fills (role=alert so screen readers announce it).
pub fn form_error(id: &str) -> Markup {
    html! { div.form-error id=(id) role="alert" hidden {} }
}

/// Error slot under a field; the script puts the API's message for `field` here.
pub fn field_error(field: &str) -> Markup {
    html! { p.field-error data-error-for=(field) id={ "err-" (field) } aria-live="polite" {} }
}

pub fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

pub fn nbsp() -> PreEscaped<&'static str> {
    PreEscaped("&nbsp;")
}
