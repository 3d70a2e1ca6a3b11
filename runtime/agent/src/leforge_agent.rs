//! The agent loop; depends on core traits only, never on a concrete backend.
