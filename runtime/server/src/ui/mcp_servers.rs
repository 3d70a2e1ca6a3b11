//! MCP servers: what is registered (transport, header names, state) with the tools each
//! listed and their schemas, a registration form, and refresh / delete. Header values are
//! never on the page: the view the API returns masks them.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::layout::{self, field_error, form_error, json_block};
use super::pages;
use super::session::UiSession;
use crate::routes::mcp_servers::McpServerView;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, session: UiSession) -> Response {
    let servers = match state.store.list_mcp_servers().await {
        Ok(s) => s,
        Err(e) => return pages::error(&session, "MCP servers", e.into()),
    };
    let views: Vec<McpServerView> = servers.iter().map(McpServerView::from).collect();
    let body = html! {
        h1 { "MCP servers" }
        p.hint { "Agents use a server's tools by listing " code { "mcp:<server>" } " (all of them) or "
                 code { "mcp:<server>/<tool>" } "; the model sees them as " code { "<server>__<tool>" } "." }
        section.panel {
            h2 { "Register" }
            form #mcp-form novalidate {
                (form_error("mcp-error"))
                label for="mcp-name" { "Name" }
                input #mcp-name name="name" required placeholder="github-tools" aria-describedby="err-name";
                (field_error("name"))
                label for="mcp-url" { "Streamable HTTP URL" }
                input #mcp-url name="url" type="url" required placeholder="https://mcp.example.com/mcp" aria-describedby="err-url";
                (field_error("url"))
                label for="mcp-headers" { "Headers " span.hint { "(optional JSON object; values are stored write-only)" } }
                textarea #mcp-headers.code name="headers" rows="3" spellcheck="false" aria-describedby="err-headers" placeholder="{\"Authorization\": \"Bearer …\"}" {}
                (field_error("headers"))
                label for="mcp-timeout" { "Timeout per call (ms)" }
                input #mcp-timeout name="timeout_ms" type="number" min="1" max="600000" value="30000" aria-describedby="err-timeout_ms";
                (field_error("timeout_ms"))
                div.actions { button.primary type="submit" #mcp-submit { "Register" } }
                p.ok #mcp-ok role="status" hidden {}
            }
        }
        (form_error("mcp-servers-error"))
        @if views.is_empty() { p.empty { "No MCP servers registered." } }
        ul.hooks #mcp-list {
            @for v in &views {
                li.card.hook data-mcp=(v.name) {
                    div.card-head {
                        h2 { (v.name) }
                        span.badge { (v.transport) }
                        @if v.enabled { span.badge.enabled { "enabled" } } @else { span.badge.disabled { "disabled" } }
                    }
                    p.meta {
                        @if let Some(url) = &v.url { code { (url) } }
                        @if let Some(cmd) = &v.command { code { (cmd) " " (v.args.clone().unwrap_or_default().join(" ")) } }
                        " · timeout " (v.timeout_ms) " ms · tools read " (v.refreshed_at.format("%Y-%m-%d %H:%M:%S UTC"))
                    }
                    @if let Some(headers) = v.headers.as_ref().filter(|h| !h.is_empty()) {
                        p.meta { "Headers: " @for (name, _) in headers { code { (name) } " " } }
                    }
                    h3 { (v.tools.len()) " tool" @if v.tools.len() != 1 { "s" } }
                    ul.endpoints {
                        @for t in &v.tools {
                            li {
                                details {
                                    summary { code { (v.name) "__" (t.name) } @if !t.description.is_empty() { " — " (t.description) } }
                                    div.row {
                                        div { h4 { "Input schema" } (json_block(&t.input_schema)) }
                                        @if let Some(out) = &t.output_schema { div { h4 { "Output schema" } (json_block(out)) } }
                                    }
                                }
                            }
                        }
                    }
                    div.actions {
                        button type="button" data-mcp-action="refresh" data-mcp-name=(v.name) { "Refresh tools" }
                        button.danger type="button" data-mcp-action="delete" data-mcp-name=(v.name) { "Delete" }
                    }
                }
            }
        }
    };
    layout::page("MCP servers", "mcp-servers", "/mcp-servers", &session, body)
}
