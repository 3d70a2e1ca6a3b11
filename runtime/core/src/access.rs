//! Who may see and run what. One place for these rules so the HTTP API, the admin UI and
//! the store's list filter cannot drift apart.

use uuid::Uuid;

use crate::agent::Agent;
use crate::api_key::ApiKeyScope;
use crate::store::AgentVisibility;

/// The authenticated identity behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Key { id: Uuid, scope: ApiKeyScope },
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Caller::Key {
                scope: ApiKeyScope::Admin,
                ..
            }
        )
    }

    pub fn key_id(&self) -> Option<Uuid> {
        match self {
            Caller::Anonymous => None,
            Caller::Key { id, .. } => Some(*id),
        }
    }

    /// The store filter matching `can_read_agent` for this caller.
    pub fn agent_visibility(&self) -> AgentVisibility {
        match self {
            Caller::Anonymous => AgentVisibility::PublicOnly,
            Caller::Key {
                scope: ApiKeyScope::Admin,
                ..
            } => AgentVisibility::All,
            Caller::Key { id, .. } => AgentVisibility::RunnableBy(*id),
        }
    }

    /// Public agents are readable by anyone; an invoke key reads the agents it may run.
    pub fn can_read_agent(&self, agent: &Agent) -> bool {
        match self {
            Caller::Anonymous => agent.is_public,
            Caller::Key {
                scope: ApiKeyScope::Admin,
                ..
            } => true,
            Caller::Key { id, .. } => invoke_key_may_run(*id, agent),
        }
    }

    /// Anonymous callers may run public agents that do not demand a key; an invoke key may
    /// run public agents and those whose allow-list is empty or names it.
    pub fn can_run_agent(&self, agent: &Agent) -> bool {
        match self {
            Caller::Anonymous => agent.is_public && !agent.api_key_required,
            Caller::Key {
                scope: ApiKeyScope::Admin,
                ..
            } => true,
            Caller::Key { id, .. } => invoke_key_may_run(*id, agent),
        }
    }
}

fn invoke_key_may_run(key: Uuid, agent: &Agent) -> bool {
    agent.is_public || agent.allowed_api_keys.is_empty() || agent.allowed_api_keys.contains(&key)
}
