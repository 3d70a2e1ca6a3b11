//! The one `Engine` per host: epoch interruption driven by a 10 ms ticker thread, and the
//! pooling allocator so that a fresh instance per call costs microseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::{HostError, WasmHostConfig};

/// How often the epoch advances. Timeouts are enforced to this granularity, and a guest
/// spinning in a loop yields to the async executor this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each linear memory zeroed in place rather than decommitted when an instance ends:
/// none. With the kernel's PAGEMAP_SCAN, wasmtime zeroes every page still resident in that
/// budget, and a page stays resident once any call touched it, so a budget of 1 MiB meant
/// zeroing about 1 MiB after every call however little the call used. Decommitting with
/// `madvise` and faulting back only what the next call touches measured 10-15% less server
/// CPU per run under load (BENCHMARKS.md, fifth session).
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 0;
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
        // table: see the two constants for what is zeroed in place and what decommitted.
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
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
