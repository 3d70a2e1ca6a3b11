//! Field-level validation errors shared by every layer that checks user input.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One problem with one field of a request, addressed by a dotted path such as
/// `config.max_steps`, so a client (or the admin UI) can show it next to the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
