//! Tests of the Rhai hook runner through the `HookRunner` API: one binary (linking is the
//! slow part on small machines), one module per topic in scripting/.

#[path = "scripting/examples.rs"]
mod examples;
#[path = "scripting/forgehook.rs"]
mod forgehook;
#[path = "scripting/hook_points.rs"]
mod hook_points;
#[path = "scripting/sandbox.rs"]
mod sandbox;

use std::sync::Arc;

// As in the server binary: each hook call's allocations are metered. Beneath it, the
// largest single allocation is recorded, so that a test can tell a helper that refuses a
// huge result before building it from one that builds it and is stopped afterwards.
#[global_allocator]
static GLOBAL: leforge_scripting::alloc::Counting<Largest> =
    leforge_scripting::alloc::Counting(Largest);

/// The largest allocation (or reallocation) this process asked for, in bytes.
pub static LARGEST_ALLOCATION: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

pub struct Largest;

impl Largest {
    fn saw(size: usize) {
        LARGEST_ALLOCATION.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
    }
}

// SAFETY: every method delegates to `System` unchanged and only updates an atomic, which
// neither allocates nor unwinds.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::saw(layout.size());
        std::alloc::System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::saw(layout.size());
        std::alloc::System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        Self::saw(new_size);
        std::alloc::System.realloc(ptr, layout, new_size)
    }
}

use leforge_core::hook::{
    HookAgent, HookChain, HookContext, HookRecordOutcome, HookScript, HookSession, HookToolCall,
};
use leforge_scripting::{HookConfig, RhaiHookRunner};
use serde_json::{json, Value};
use uuid::Uuid;

pub fn runner() -> RhaiHookRunner {
    RhaiHookRunner::new(HookConfig::default()).unwrap()
}

pub fn runner_with(config: HookConfig) -> RhaiHookRunner {
    RhaiHookRunner::new(config).unwrap()
}

pub fn script(name: &str, source: &str) -> HookScript {
    HookScript {
        id: Uuid::new_v4(),
        name: name.into(),
        version: 1,
        source: Arc::from(source),
    }
}

/// One of the example scripts in the repository's scripts/ folder.
pub fn example(name: &str) -> HookScript {
    let path = format!("{}/../../scripts/{name}.rhai", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    leforge_scripting::compile(&source)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e:?}"));
    script(name, &source)
}

/// The agent's own scripts, no global ones, no tools.
pub fn session(scripts: Vec<HookScript>) -> HookSession {
    HookSession {
        chain: HookChain::new([], scripts),
        tools: None,
    }
}

pub fn ctx() -> HookContext {
    HookContext {
        agent: HookAgent {
            id: Uuid::from_u128(7),
            slug: "support-bot".into(),
            name: "Support bot".into(),
        },
        run_id: Uuid::from_u128(42),
        input: "hello".into(),
        data: json!({"customer": "c-1"}),
        step: 3,
        metadata: json!({"triggered_by": "key-1"}),
    }
}

pub fn call(args: Value) -> HookToolCall {
    HookToolCall {
        tool: "echo".into(),
        action: "echo".into(),
        name: "echo__echo".into(),
        args,
    }
}

pub fn outcomes(records: &[leforge_core::hook::HookRecord]) -> Vec<(String, HookRecordOutcome)> {
    records
        .iter()
        .map(|r| (r.script.clone(), r.outcome.clone()))
        .collect()
}
