//! The `leforge` binary. All behaviour lives in the library so tests can drive it in-process.

// glibc malloc took about a quarter of the server's CPU under 1,000 concurrent runs (many
// small JSON allocations freed on other threads); mimalloc's per-thread free lists avoid
// that contention. See BENCHMARKS.md. `Counting` meters what each Rhai hook call allocates
// (map keys included, which Rhai's own limits do not count), so a hostile script is stopped
// near its memory budget; it adds two thread-local operations per allocation.
#[global_allocator]
static GLOBAL: leforge_scripting::alloc::Counting<mimalloc::MiMalloc> =
    leforge_scripting::alloc::Counting(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    leforge_server::cli::main()
}
