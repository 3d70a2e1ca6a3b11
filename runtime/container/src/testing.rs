//! Test support shared by this crate's Docker tests and the server's: whether an engine is
//! reachable (skip, or fail when CI requires Docker) and the example container ForgeHook.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use bollard::Docker;
use serde_json::Value;

fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the Docker tests can run. Without an engine `test` prints that it skipped, unless
/// `LEFORGE_REQUIRE_DOCKER=1` (CI), where this panics instead.
///
/// # Panics
/// When Docker is required but unreachable.
pub async fn docker_ready(test: &str) -> bool {
    let ok = async {
        let d = Docker::connect_with_defaults().ok()?;
        let d = tokio::time::timeout(Duration::from_secs(5), d.negotiate_version())
            .await
            .ok()?
            .ok()?;
        d.ping().await.ok()
    }
    .await
    .is_some();
    if ok {
        return true;
    }
    if std::env::var("LEFORGE_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("LEFORGE_REQUIRE_DOCKER=1 but no Docker engine is reachable");
    }
    println!("SKIP {test}: no Docker engine is reachable");
    false
}

/// Builds `leforge/container-example:0.1.0` once per test process, however many tests ask at
/// once (the script is idempotent, and quick when nothing changed).
///
/// # Panics
/// When the image cannot be built.
pub fn example_image() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let script = repo_root().join("plugins/container-example/build-image.sh");
        let out = std::process::Command::new(script)
            .output()
            .map_err(|e| format!("cannot run build-image.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "build-image.sh failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The example's manifest (`plugins/container-example/forgehook.json`) as JSON.
///
/// # Panics
/// When the file is missing or not JSON.
pub fn example_manifest() -> Value {
    let path = repo_root().join("plugins/container-example/forgehook.json");
    #[allow(clippy::unwrap_used)]
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
