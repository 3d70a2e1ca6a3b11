//! The OpenAPI 3.1 document, generated from the handlers' annotations and the request and
//! response types, so it cannot drift from the code.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "LeForge Agent Runtime", description = "Run AI agents with sandboxed ForgeHook tools. \
        Every response is an envelope: {success, data, request_id} or {success: false, error: {code, message, details}, request_id}."),
    paths(
        routes::health::health,
        routes::agents::list, routes::agents::create, routes::agents::get,
        routes::agents::update, routes::agents::delete,
        routes::runs::list, routes::runs::list_for_agent, routes::runs::get,
        routes::api_keys::list, routes::api_keys::create, routes::api_keys::revoke,
        routes::forgehooks::list, routes::forgehooks::get, routes::forgehooks::install,
        routes::forgehooks::remove, routes::forgehooks::enable, routes::forgehooks::disable,
        routes::forgehooks::configure, routes::forgehooks::invoke,
        routes::llm::providers, routes::llm::models,
        routes::agent_runs::run, routes::agent_runs::result, routes::agent_runs::events,
        routes::agent_runs::cancel,
        routes::scripts::list, routes::scripts::create, routes::scripts::get,
        routes::scripts::update, routes::scripts::delete, routes::scripts::test,
        routes::mcp_servers::list, routes::mcp_servers::create, routes::mcp_servers::get,
        routes::mcp_servers::update, routes::mcp_servers::delete, routes::mcp_servers::refresh,
        crate::telemetry::scrape, crate::mcp::endpoint_doc,
    ),
    components(schemas(
        leforge_core::Agent, leforge_core::AgentConfig, leforge_core::AgentConfigPatch,
        leforge_core::Provider, leforge_core::Run, leforge_core::RunStep, leforge_core::RunStatus,
        leforge_core::ApiKey, leforge_core::ApiKeyScope, leforge_core::FieldError,
        routes::agents::CreateAgentRequest, routes::agents::AgentView, routes::agents::PublicAgent, routes::agents::UpdateAgentRequest, routes::agents::Deleted,
        routes::api_keys::CreateApiKeyRequest, routes::api_keys::CreatedApiKey,
        routes::health::Health,
        routes::forgehooks::ForgehookView, routes::forgehooks::EndpointView,
        routes::forgehooks::InvokeResult,
        leforge_core::forgehook::Manifest, leforge_core::forgehook::Capabilities,
        leforge_core::llm::ProviderInfo, leforge_core::llm::ModelInfo,
        routes::agent_runs::RunRequest, routes::agent_runs::RunView, routes::agent_runs::RunMetrics,
        leforge_core::RunMode, leforge_core::CallbackAttempt,
        leforge_core::Script, routes::scripts::CreateScriptRequest,
        routes::scripts::UpdateScriptRequest, routes::scripts::TestScriptRequest,
        routes::scripts::ScriptTestResult, routes::scripts::ScriptTestError,
        routes::scripts::DeletedScript, leforge_core::hook::HookRecord,
        leforge_core::hook::HookRecordOutcome, leforge_core::hook::HookPoint,
        leforge_core::hook::HookLog, leforge_core::hook::HookLogLevel,
        routes::mcp_servers::McpServerRequest, routes::mcp_servers::McpServerView,
        routes::mcp_servers::DeletedMcpServer, leforge_core::mcp::McpTool,
    )),
    modifiers(&Security),
    tags(
        (name = "health"), (name = "agents"), (name = "runs"), (name = "api-keys"), (name = "forgehooks"), (name = "llm"), (name = "scripts"), (name = "mcp-servers"), (name = "mcp"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (admin or invoke scope)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The same API key as a bearer token"))
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
