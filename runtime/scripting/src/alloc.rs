//! Memory accounting for hook calls. Rhai's limits count string bytes, array items and map
//! entries, but not map keys, and a native function's result is only checked after it was
//! built. So the bytes a hook call allocates are counted as they are allocated: the server
//! installs [`Counting`] as its global allocator, each hook call counts the net bytes its
//! worker thread allocates, and the engine's progress callback stops the script once they
//! pass the call's budget. Helpers that could build one huge value check their projected
//! size before allocating, since a single allocation happens between two progress checks.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    // Const-initialised and without destructors: safe to touch from inside the allocator.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// A global allocator that counts the bytes allocated on threads running a hook call.
pub struct Counting<A>(pub A);

fn count(delta: isize) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = NET_BYTES.try_with(|n| n.set(n.get().saturating_add(delta)));
        }
    });
}

// The one unsafe item of this crate: a global allocator cannot be written without it.
// SAFETY: every method delegates to the inner allocator unchanged and only updates
// thread-local counters, which neither allocate nor unwind.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Whether hook calls are metered: whether [`Counting`] is this process's allocator. Found
/// out once, by watching a small allocation.
pub fn metered() -> bool {
    static METERED: OnceLock<bool> = OnceLock::new();
    *METERED.get_or_init(|| {
        let metering = Metering::start();
        let probe = std::hint::black_box(Box::new([0u8; 64]));
        let seen = allocated() > 0;
        drop(probe);
        drop(metering);
        seen
    })
}

/// Counts this thread's allocations until dropped.
pub(crate) struct Metering(());

impl Metering {
    pub(crate) fn start() -> Metering {
        NET_BYTES.with(|n| n.set(0));
        COUNTING.with(|on| on.set(true));
        Metering(())
    }
}

impl Drop for Metering {
    fn drop(&mut self) {
        COUNTING.with(|on| on.set(false));
    }
}

/// Net bytes this thread allocated since metering started.
pub(crate) fn allocated() -> isize {
    NET_BYTES.with(Cell::get)
}
