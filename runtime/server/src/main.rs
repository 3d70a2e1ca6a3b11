//! The `leforge` binary. All behaviour lives in the library so tests can drive it in-process.

// glibc malloc took about a quarter of the server's CPU under 1,000 concurrent runs (many
// small JSON allocations freed on other threads); mimalloc's per-thread free lists avoid
// that contention. See BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    leforge_server::cli::main()
}
