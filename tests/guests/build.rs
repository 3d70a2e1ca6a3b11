//! Builds the test guests under components/ for wasm32-wasip2 and writes their paths into
//! `$OUT_DIR/guests.rs`. The inner cargo gets its own target directory: sharing the outer
//! one would deadlock on the build-directory lock the outer cargo already holds.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const GUESTS: [(&str, &str); 3] = [
    ("ECHO", "leforge_guest_echo"),
    ("HOSTILE", "leforge_guest_hostile"),
    ("OTHER_WORLD", "leforge_guest_other_world"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let components = manifest_dir.join("components");
    let root = manifest_dir.join("../..");
    println!("cargo:rerun-if-changed={}", components.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("host-api/sdk").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("host-api/wit").display()
    );

    let outer_target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = outer_target.join("wasm-guests");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(components.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    // What the outer build sets for the host target must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the test guests");
    if !status.success() {
        panic!(
            "building the test guests failed (is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`, or /work/shared/toolchain/install-wasm32-wasip2.sh)"
        );
    }

    let out_dir = target_dir.join("wasm32-wasip2/release");
    let mut code = String::new();
    for (konst, file) in GUESTS {
        let path = out_dir.join(format!("{file}.wasm"));
        assert!(path.exists(), "{} was not built", path.display());
        code.push_str(&format!(
            "/// Path of the built `{file}.wasm` component.\npub const {konst}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let dest = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("guests.rs");
    std::fs::write(dest, code).expect("cannot write guests.rs");
}
