//! Reading runs: `/api/v1/runs`, `/api/v1/runs/{run_id}` and `/api/v1/agents/{id}/runs`.
//! (Runs are started by the agent-run route.)

use axum::extract::{Path, State};
use leforge_core::{Caller, Run, RunFilter, RunStatus};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Auth;
use crate::envelope::{ApiQuery, Ok};
use crate::error::{ApiError, ApiResult};
use crate::routes::agent_runs::RunView;
use crate::routes::agents::readable_agent;
use crate::routes::PageParams;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct RunParams {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only runs with this status.
    pub status: Option<String>,
    /// Only runs of this agent (id or slug); `/api/v1/runs` only.
    pub agent: Option<String>,
}

fn parse_status(status: Option<&str>) -> ApiResult<Option<RunStatus>> {
    match status {
        None | Some("") => Result::Ok(None),
        Some(s) => RunStatus::parse(s).map(Some).ok_or_else(|| {
            let all: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid_field("status", format!("must be one of {}", all.join(", ")))
        }),
    }
}

/// Admins read every run; an invoke key reads the runs it started.
fn scope_filter(caller: &Caller, filter: &mut RunFilter) -> ApiResult<()> {
    match caller {
        Caller::Anonymous => Err(ApiError::unauthorized(
            "an API key is required to list runs",
        )),
        c if c.is_admin() => Result::Ok(()),
        Caller::Key { id, .. } => {
            filter.triggered_by = Some(id.to_string());
            Result::Ok(())
        }
    }
}

async fn list_with(
    state: &AppState,
    caller: &Caller,
    mut filter: RunFilter,
    params: &RunParams,
) -> ApiResult<Ok<Vec<RunView>>> {
    scope_filter(caller, &mut filter)?;
    filter.status = parse_status(params.status.as_deref())?;
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor.clone(),
    }
    .to_request()?;
    Result::Ok(Ok::page(
        state.store.list_runs(filter, page).await?.map(RunView::new),
    ))
}

/// List runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunParams),
    responses((status = 200, description = "Runs with their steps", body = [RunView]),
              (status = 401, description = "No API key")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(params): ApiQuery<RunParams>,
) -> ApiResult<Ok<Vec<RunView>>> {
    let mut filter = RunFilter::default();
    if let Some(agent) = params.agent.as_deref().filter(|a| !a.is_empty()) {
        // A deleted agent's runs stay listable by id.
        filter.agent_id = match state.store.find_agent(agent).await? {
            Some(a) => Some(a.id),
            None => Some(
                Uuid::parse_str(agent)
                    .map_err(|_| ApiError::not_found(format!("agent '{agent}' not found")))?,
            ),
        };
    }
    list_with(&state, &caller, filter, &params).await
}

/// List the runs of one agent, newest first.
#[utoipa::path(get, path = "/api/v1/agents/{id_or_slug}/runs", tag = "runs",
    params(("id_or_slug" = String, Path, description = "Agent id or slug"), RunParams),
    responses((status = 200, description = "Runs with their steps", body = [RunView]),
              (status = 404, description = "No such agent")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list_for_agent(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id_or_slug): Path<String>,
    ApiQuery(params): ApiQuery<RunParams>,
) -> ApiResult<Ok<Vec<RunView>>> {
    if caller == Caller::Anonymous {
        return Err(ApiError::unauthorized(
            "an API key is required to list runs",
        ));
    }
    let agent = readable_agent(&state, &caller, &id_or_slug).await?;
    let filter = RunFilter {
        agent_id: Some(agent.id),
        ..Default::default()
    };
    list_with(&state, &caller, filter, &params).await
}

/// Loads a run the caller may read. Anonymous callers (of public agents) may read the runs
/// they started anonymously: the run id, an unguessable UUID, is the capability.
pub async fn readable_run(state: &AppState, caller: &Caller, run_id: &str) -> ApiResult<Run> {
    let not_found = || ApiError::not_found(format!("run '{run_id}' not found"));
    let id = Uuid::parse_str(run_id).map_err(|_| not_found())?;
    let run = state.store.get_run(id).await?.ok_or_else(not_found)?;
    let allowed = match caller {
        Caller::Anonymous => run.triggered_by.is_none(),
        c if c.is_admin() => true,
        Caller::Key { id, .. } => run.triggered_by.as_deref() == Some(id.to_string().as_str()),
    };
    if allowed {
        Result::Ok(run)
    } else if *caller == Caller::Anonymous {
        Err(ApiError::unauthorized(
            "an API key is required to read this run",
        ))
    } else {
        Err(not_found())
    }
}

/// Read a run with its steps in order.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run", body = RunView),
              (status = 404, description = "No such run")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(run_id): Path<String>,
) -> ApiResult<Ok<RunView>> {
    let run = readable_run(&state, &caller, &run_id).await?;
    Result::Ok(Ok::new(RunView::new(run)))
}
