//! Per-call limits: what a manifest asks for, capped by what the host allows, and the store
//! limiter that remembers whether it denied a memory growth so an out-of-memory ends as
//! `OUT_OF_MEMORY` rather than as an anonymous trap.

use std::time::Duration;

use leforge_core::forgehook::Limits;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::WasmHostConfig;

/// The limits in force for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    pub max_output_bytes: u64,
}

impl CallLimits {
    /// The manifest's request, each capped at the host's maximum.
    pub fn resolve(requested: &Limits, host: &WasmHostConfig) -> CallLimits {
        CallLimits {
            timeout_ms: requested.timeout_ms.clamp(1, host.max_timeout_ms),
            memory_mb: requested.memory_mb.clamp(1, host.max_memory_mb),
            max_output_bytes: requested.max_output_bytes.clamp(1, host.max_output_bytes),
        }
    }

    /// The host's own maximums, used while nothing is known about a component yet (its
    /// `describe` call at install).
    pub fn host_max(host: &WasmHostConfig) -> CallLimits {
        CallLimits {
            timeout_ms: host.max_timeout_ms,
            memory_mb: host.max_memory_mb,
            max_output_bytes: host.max_output_bytes,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Wraps wasmtime's `StoreLimits` (which enforces the cap and, with `trap_on_grow_failure`,
/// turns a refused growth into a trap) and records that the refusal happened: the trap
/// itself does not say why it was raised.
///
/// It also caps the *sum* over all linear memories: `StoreLimits` caps each memory on its
/// own, and a component may have several (CPython guests do).
pub(crate) struct MemoryLimiter {
    inner: StoreLimits,
    budget: usize,
    used: usize,
    pub(crate) denied: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limits: &CallLimits) -> Self {
        let bytes = limits.memory_bytes();
        MemoryLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(bytes)
                // A table cannot outgrow the memory budget either (each element is a pointer).
                .table_elements(bytes / 8)
                .trap_on_grow_failure(true)
                .build(),
            budget: bytes,
            used: 0,
            denied: false,
        }
    }

    fn note(&mut self, outcome: &wasmtime::Result<bool>) {
        if !matches!(outcome, Ok(true)) {
            self.denied = true;
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let outcome = self.inner.memory_growing(current, desired, maximum);
        self.note(&outcome);
        outcome?;
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.budget {
            self.denied = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded across all memories",
                self.budget
            ));
        }
        self.used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.denied = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let outcome = self.inner.table_growing(current, desired, maximum);
        self.note(&outcome);
        outcome
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.denied = true;
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_limits_are_capped_by_the_host() {
        let host = WasmHostConfig {
            max_timeout_ms: 2_000,
            max_memory_mb: 128,
            max_output_bytes: 1_000,
            ..WasmHostConfig::new("/nonexistent")
        };
        let asked = Limits {
            timeout_ms: 60_000,
            memory_mb: 64,
            max_output_bytes: 10_000,
        };
        assert_eq!(
            CallLimits::resolve(&asked, &host),
            CallLimits {
                timeout_ms: 2_000,
                memory_mb: 64,
                max_output_bytes: 1_000
            }
        );
    }

    #[test]
    fn limiter_records_a_denied_growth() {
        let limits = CallLimits {
            timeout_ms: 1,
            memory_mb: 1,
            max_output_bytes: 1,
        };
        let mut l = MemoryLimiter::new(&limits);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.denied);
        assert!(l.memory_growing(1 << 20, 2 << 20, None).is_err());
        assert!(l.denied);
    }

    #[test]
    fn limiter_caps_the_sum_of_all_memories() {
        let limits = CallLimits {
            timeout_ms: 1,
            memory_mb: 2,
            max_output_bytes: 1,
        };
        let mut l = MemoryLimiter::new(&limits);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.denied);
        // A third memory would fit the per-memory cap but not the total.
        assert!(l.memory_growing(0, 1 << 20, None).is_err());
        assert!(l.denied);
    }
}
