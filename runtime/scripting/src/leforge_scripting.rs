//! Rhai hook engine with sandbox limits.
