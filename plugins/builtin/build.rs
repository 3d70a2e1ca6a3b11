//! Builds every built-in ForgeHook for wasm32-wasip2 and generates `$OUT_DIR/builtins.rs`,
//! which embeds the components with `include_bytes!`.
//!
//! A plugin is built-in when it is a crate directly under plugins/ whose Cargo.toml says
//! `[package.metadata.leforge] builtin = true`; its ForgeHook id is its directory name.
//! Discovering them (rather than listing them here) lets a new plugin be added without
//! touching this crate.
//!
//! The plugins are members of the root workspace (so `cargo test --workspace` runs their
//! native unit tests), and each is built with `cargo rustc --crate-type cdylib`: only the wasm
//! build produces a component, the native build stays a plain rlib. The inner cargo gets its
//! own target directory under the outer one: sharing the outer's would deadlock on the
//! build-directory lock the outer cargo holds while it runs this script.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

struct Plugin {
    id: String,
    package: String,
    lib_name: String,
    dir: PathBuf,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let plugins_dir = manifest_dir
        .parent()
        .expect("plugins/builtin has a parent")
        .to_path_buf();
    let root = plugins_dir
        .parent()
        .expect("plugins/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    let members = workspace_members(&root);
    let mut plugins = discover(&plugins_dir);
    // A plugin someone is still writing may be marked built-in before it joins the
    // workspace; cargo could not build it, and failing here would break every build.
    plugins.retain(|p| {
        let member = members.iter().any(|m| {
            let m = m.trim_end_matches('/');
            match m.strip_suffix("/*") {
                Some(parent) => p.dir.parent() == Some(&root.join(parent)),
                None => root.join(m) == p.dir,
            }
        });
        if !member {
            println!(
                "cargo:warning=plugins/{} is marked builtin but is not a member of the root \
                 workspace; it is not embedded",
                p.id
            );
        }
        member
    });
    // A new plugin must be added to the root workspace's members, so the root manifest
    // changing is what announces it; Cargo.lock covers dependency upgrades.
    for path in [
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
        root.join("host-api/sdk"),
        root.join("host-api/wit"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for p in &plugins {
        for path in [
            p.dir.join("Cargo.toml"),
            p.dir.join("src"),
            p.dir.join("build.rs"),
        ] {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let target_dir = outer_target_dir(&out_dir, &root).join("builtin-plugins");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    check_wasm_target();
    for p in &plugins {
        let mut cmd = Command::new(&cargo);
        cmd.args(["rustc", "--release", "--lib", "--crate-type", "cdylib"])
            .args(["--target", WASM_TARGET, "-p", &p.package])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(&root);
        // What the outer build sets for the host target must not leak into the guest build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_TARGET_DIR",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().unwrap_or_else(|e| {
            panic!(
                "cannot run cargo to build the built-in ForgeHook {}: {e}",
                p.id
            )
        });
        if !status.success() {
            panic!(
                "building the built-in ForgeHook {} ({}) for {WASM_TARGET} failed: see cargo's \
                 output above. If the target is missing: `rustup target add {WASM_TARGET}`",
                p.id, p.package
            );
        }
    }

    let built = target_dir.join(WASM_TARGET).join("release");
    let mut code = String::from(
        "/// Every built-in ForgeHook, sorted by id.\npub static ALL: &[Builtin] = &[\n",
    );
    for p in &plugins {
        let src = built.join(format!("{}.wasm", p.lib_name));
        // A copy in OUT_DIR, so that a later rebuild of the shared inner target directory
        // (from another profile of the outer build) cannot change bytes under this one.
        let dest = out_dir.join(format!("{}.wasm", p.id));
        std::fs::copy(&src, &dest).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
        writeln!(
            code,
            "    Builtin {{ id: {:?}, package: {:?}, wasm: include_bytes!({:?}) }},",
            p.id,
            p.package,
            dest.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), code).expect("cannot write builtins.rs");
}

/// `workspace.members` of the root Cargo.toml.
fn workspace_members(root: &Path) -> Vec<String> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let manifest: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .map(|members| {
            members
                .iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Crates directly under plugins/ marked `builtin = true`, sorted by id.
fn discover(plugins_dir: &Path) -> Vec<Plugin> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(plugins_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", plugins_dir.display()));
    for entry in entries.flatten() {
        let dir = entry.path();
        let manifest_path = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest_path) else {
            continue;
        };
        let manifest: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("cannot parse {}: {e}", manifest_path.display()));
        let Some(package) = manifest.get("package").and_then(|p| p.as_table()) else {
            continue;
        };
        let builtin = package
            .get("metadata")
            .and_then(|m| m.get("leforge"))
            .and_then(|l| l.get("builtin"))
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
        if !builtin {
            continue;
        }
        let name = package
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_else(|| panic!("{} has no package name", manifest_path.display()))
            .to_string();
        let lib_name = manifest
            .get("lib")
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| name.replace('-', "_"));
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{} is not a UTF-8 name", dir.display()))
            .to_string();
        found.push(Plugin {
            id,
            package: name,
            lib_name,
            dir,
        });
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// The outer build's target directory: the ancestor of OUT_DIR that cargo marked with
/// CACHEDIR.TAG, which stays right when the target directory is configured elsewhere.
fn outer_target_dir(out_dir: &Path, root: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .or_else(|| env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| root.join("target"))
}

/// Stops with the one command that fixes it when the compiler has no standard library for
/// the guest target: otherwise the nested build fails deep in its output with "can't find
/// crate for `core`".
fn check_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--target", WASM_TARGET, "--print", "target-libdir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // A compiler that cannot say (not rustup's) is left to the build itself.
    if let Some(dir) = libdir {
        if !dir.exists() {
            panic!(
                "the Rust target {WASM_TARGET} is not installed; the built-in ForgeHooks are \
                 compiled for it. Install it with:\n\n    rustup target add {WASM_TARGET}\n"
            );
        }
    }
}
