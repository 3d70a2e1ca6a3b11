//! The `leforge` binary. All behaviour lives in the library so tests can drive it in-process.

fn main() -> std::process::ExitCode {
    leforge_server::cli::main()
}
