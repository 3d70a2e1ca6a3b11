//! The one `Engine` per host: epoch interruption driven by a 10 ms ticker thread, and the
//! pooling allocator so that a fresh instance per call costs microseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::{HostError, WasmHostConfig};

/// How often the epoch advances. Timeouts are enforced to this granularity, and a guest
/// spinning in a loop yields to the async executor this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each linear memory kept resident and reset in place, rather than decommitted,
/// when an instance ends, where the kernel has `PAGEMAP_SCAN` (Linux 6.7+).
///
/// With the scan, wasmtime resets only the pages the instance dirtied, up to this budget, and
/// decommits the rest. A call of a built-in ForgeHook dirties far less than 1 MiB, so nothing
/// is decommitted: no `madvise`, no TLB shootdown across the cores, and no page faults when
/// the next instance in the slot touches the same pages. Measured against decommitting
/// everything (a budget of 0): 1.21–1.46 ms of server CPU per run against 1.36–2.15 ms, in
/// four alternated rounds (BENCHMARKS.md, seventh session).
const LINEAR_MEMORY_KEEP_RESIDENT_WITH_SCAN: usize = 1 << 20;
/// Without the scan, wasmtime zeroes the whole budget after every call, however little the
/// call used, and that measured 10–15% more server CPU per run than decommitting (fifth
/// session), so nothing is kept resident.
const LINEAR_MEMORY_KEEP_RESIDENT_WITHOUT_SCAN: usize = 0;
/// Bytes of each table zeroed in place (tables are small, and this one was not re-measured).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

pub(crate) fn build_engine(cfg: &WasmHostConfig) -> Result<Engine, HostError> {
    let slots = cfg.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // Python and JS guests are made of dozens of core instances and several memories
        // and tables; Rust guests need one of each.
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .total_core_instances(slots.saturating_mul(64))
        .total_memories(slots.saturating_mul(8))
        .total_tables(slots.saturating_mul(16))
        .total_stacks(slots)
        .table_elements(100_000)
        .max_memory_size(usize::try_from(cfg.max_memory_mb << 20).unwrap_or(usize::MAX))
        // Every call gets a fresh instance, so every call ends by resetting its memory and
        // table: see the constants for what is reset in place and what decommitted.
        .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
            LINEAR_MEMORY_KEEP_RESIDENT_WITH_SCAN
        } else {
            LINEAR_MEMORY_KEEP_RESIDENT_WITHOUT_SCAN
        })
        .pagemap_scan(Enabled::Auto)
        .table_keep_resident(TABLE_KEEP_RESIDENT);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread, so it keeps ticking
/// whatever the tokio runtime is doing (and under any runtime, in tests).
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Result<Self, HostError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("leforge-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| HostError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
