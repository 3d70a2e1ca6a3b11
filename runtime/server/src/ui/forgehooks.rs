//! ForgeHooks: what is installed (runtime, version, state, endpoints and schemas), uploads of
//! `.wasm` components, container/gateway manifests, and a "try it" form per endpoint.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::layout::{self, form_error, json_block};
use super::pages;
use super::session::UiSession;
use crate::routes::forgehooks::ForgehookView;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, session: UiSession) -> Response {
    let hooks = match state.forgehooks.list().await {
        Ok(h) => h,
        Err(e) => return pages::error(&session, "ForgeHooks", e),
    };
    let views: Vec<ForgehookView> = hooks.iter().map(ForgehookView::from_installed).collect();
    let body = html! {
        h1 { "ForgeHooks" }
        section.panel {
            h2 { "Install" }
            div.row {
                form #upload-form novalidate {
                    h3 { "WASM component" }
                    (form_error("upload-error"))
                    label for="upload-wasm" { "Component (.wasm)" }
                    input #upload-wasm type="file" name="wasm" accept=".wasm,application/wasm" required;
                    label for="upload-manifest" { "Manifest " span.hint { "(optional JSON, overrides describe())" } }
                    input #upload-manifest type="file" name="manifest" accept=".json,application/json";
                    div.actions { button.primary type="submit" #upload-submit { "Upload" } }
                    p.ok #upload-ok role="status" hidden {}
                }
                form #manifest-form novalidate {
                    h3 { "Container or gateway manifest" }
                    (form_error("manifest-error"))
                    label for="manifest-json" { "Manifest JSON" }
                    textarea #manifest-json.code name="manifest" rows="8" spellcheck="false" required {}
                    div.actions { button.primary type="submit" #manifest-submit { "Install" } }
                    p.ok #manifest-ok role="status" hidden {}
                }
            }
        }
        (form_error("forgehooks-error"))
        @if views.is_empty() { p.empty { "Nothing installed." } }
        ul.hooks #hook-list {
            @for v in &views {
                li.card.hook data-hook=(v.id) {
                    div.card-head {
                        h2 { (v.name) }
                        span.badge { (v.runtime) }
                        span.badge { "v" (v.version) }
                        @if v.enabled { span.badge.enabled { "enabled" } } @else { span.badge.disabled { "disabled" } }
                        @if v.builtin { span.badge { "built-in" } }
                    }
                    p.meta { code { (v.id) } @if !v.author.is_empty() { " · " (v.author) } @if !v.category.is_empty() { " · " (v.category) } }
                    @if !v.description.is_empty() { p.description { (v.description) } }
                    @if !v.config.is_empty() {
                        details {
                            summary { "Configuration" }
                            dl {
                                @for (k, val) in &v.config { dt { (k) } dd { code { (val) } } }
                            }
                        }
                    }
                    h3 { (v.endpoints.len()) " endpoint" @if v.endpoints.len() != 1 { "s" } }
                    ul.endpoints {
                        @for e in &v.endpoints {
                            @let fid = format!("try-{}-{}", v.id, e.name);
                            li {
                                details {
                                    summary { code { (e.name) } @if !e.description.is_empty() { " — " (e.description) } }
                                    div.row {
                                        div { h4 { "Input schema" } (json_block(&e.input_schema)) }
                                        div { h4 { "Output schema" } (json_block(&e.output_schema)) }
                                    }
                                    form.try-it novalidate data-hook=(v.id) data-endpoint=(e.name) {
                                        label for=(fid) { "Try it: input JSON" }
                                        textarea.code id=(fid) rows="4" spellcheck="false" { (example(&e.input_schema)) }
                                        div.actions { button type="submit" { "Invoke" } }
                                        div.form-error role="alert" hidden {}
                                        pre.json.try-result hidden {}
                                    }
                                }
                            }
                        }
                    }
                    div.actions {
                        @if v.enabled {
                            button type="button" data-hook-action="disable" data-hook-id=(v.id) { "Disable" }
                        } @else {
                            button type="button" data-hook-action="enable" data-hook-id=(v.id) { "Enable" }
                        }
                        button.danger type="button" data-hook-action="delete" data-hook-id=(v.id) data-name=(v.name) { "Delete" }
                    }
                }
            }
        }
    };
    layout::page("ForgeHooks", "forgehooks", "/forgehooks", &session, body)
}

/// A starting input for the try-it box: the schema's required properties with placeholder
/// values of their types.
fn example(schema: &Value) -> String {
    let mut out = serde_json::Map::new();
    let props = schema.get("properties").and_then(|p| p.as_object());
    let required = schema
        .get("required")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(props) = props {
        for name in required.iter().filter_map(|r| r.as_str()) {
            let ty = props
                .get(name)
                .and_then(|p| p.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("string");
            let v = match ty {
                "number" | "integer" => Value::from(0),
                "boolean" => Value::Bool(false),
                "array" => Value::Array(vec![]),
                "object" => Value::Object(Default::default()),
                _ => Value::String(String::new()),
            };
            out.insert(name.to_string(), v);
        }
    }
    serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_else(|_| "{}".into())
}
