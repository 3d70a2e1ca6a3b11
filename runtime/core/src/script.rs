//! Stored hook scripts: what an admin saves through `/api/v1/scripts` and what agents list
//! in `hooks`. The engine that runs them lives in `runtime/scripting`; here are only the
//! records and the rules every door (API, UI, CLI) applies.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::hook::HookScript;
use crate::validation::FieldError;

/// A stored script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Script {
    pub id: Uuid,
    /// Unique; other scripts `import` it by this name.
    pub name: String,
    pub description: Option<String>,
    /// Rhai source defining any of `on_run_start`, `before_tool`, `after_tool`, `on_run_end`.
    pub source: String,
    /// 1 on creation, incremented by every update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Script {
    /// The form the hook runner takes.
    pub fn to_hook_script(&self) -> HookScript {
        HookScript {
            id: self.id,
            name: self.name.clone(),
            version: self.version,
            source: Arc::from(self.source.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewScript {
    pub name: String,
    pub description: Option<String>,
    pub source: String,
}

/// A validated partial update; `description: Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub source: Option<String>,
}

pub const MAX_SCRIPT_NAME: usize = 100;
/// Sources are small programs; 256 KiB is far beyond any sensible hook.
pub const MAX_SCRIPT_SOURCE: usize = 256 * 1024;

/// Names are what `import "name"` and `LEFORGE_GLOBAL_HOOKS` use, so they are restricted to
/// characters that need no quoting anywhere, and must not look like an id (lookups accept
/// either).
pub fn validate_script_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.is_empty() {
        errors.push(FieldError::new("name", "is required and must not be blank"));
    } else if name.len() > MAX_SCRIPT_NAME {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_SCRIPT_NAME} characters"),
        ));
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        errors.push(FieldError::new(
            "name",
            "may contain only ASCII letters, digits, '_', '-' and '.'",
        ));
    } else if Uuid::parse_str(name).is_ok() {
        errors.push(FieldError::new("name", "must not be a UUID"));
    }
}

pub fn validate_script_source(source: &str, errors: &mut Vec<FieldError>) {
    if source.len() > MAX_SCRIPT_SOURCE {
        errors.push(FieldError::new(
            "source",
            format!("must be at most {MAX_SCRIPT_SOURCE} bytes"),
        ));
    }
}

pub fn validate_script_description(description: Option<&str>, errors: &mut Vec<FieldError>) {
    if description.is_some_and(|d| d.chars().count() > 10_000) {
        errors.push(FieldError::new(
            "description",
            "must be at most 10000 characters",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_not_ids() {
        let check = |n: &str| {
            let mut e = Vec::new();
            validate_script_name(n, &mut e);
            e.is_empty()
        };
        assert!(check("redact_pii"));
        assert!(check("audit-log.v2"));
        assert!(!check(""));
        assert!(!check("has space"));
        assert!(!check(&"x".repeat(101)));
        assert!(!check("0191e9a4-6d0e-7c33-8a1b-3f0e5d1c2b3a"));
    }
}
