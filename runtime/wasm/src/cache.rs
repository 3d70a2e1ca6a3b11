//! The artifact store: each installed component's original `.wasm` and its precompiled form,
//! so start-up deserializes instead of recompiling (seconds for a Python guest).
//!
//! Layout under the cache directory:
//! - `wasm/<sha256>.wasm`: the component as installed; recompiled from when the engine changes.
//! - `compiled/<sha256>-<engine>.cwasm` plus `.hmac`: the precompiled artifact, keyed by
//!   the engine's compatibility hash, and its HMAC-SHA256 under a key kept *outside* the
//!   cache directory (`<cache-dir>.key` by default). Deserializing a `.cwasm` runs it as
//!   native code, so a plain digest beside it only caught corruption: whoever could write the
//!   file could write the digest too. Without the key, a planted artifact fails the check and
//!   the component is recompiled from its `.wasm` (whose name is its own digest).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;

pub(crate) struct ArtifactCache {
    wasm_dir: PathBuf,
    compiled_dir: PathBuf,
    engine_key: String,
    /// Authenticates precompiled artifacts.
    mac_key: [u8; 32],
}

/// Where the artifact key lives when the configuration names no path: beside the cache
/// directory, not in it.
pub(crate) fn default_key_path(cache_dir: &Path) -> PathBuf {
    let mut name = cache_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "wasm-cache".into());
    name.push(".key");
    cache_dir.with_file_name(name)
}

/// The key at `path`, created (32 random bytes, owner-only) when missing.
fn load_key(path: &Path) -> io::Result<[u8; 32]> {
    if let Some(bytes) = read_if_exists(path)? {
        if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(key);
        }
        tracing::warn!(path = %path.display(), "the artifact key is malformed; making a new one");
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(path, &key)?;
    Ok(key)
}

/// Feeds `std::hash::Hash` output into SHA-256, so the engine key is stable across processes
/// (std's `DefaultHasher` makes no such promise).
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ArtifactCache {
    pub(crate) fn open(dir: &Path, key_path: &Path, engine: &Engine) -> io::Result<Self> {
        let wasm_dir = dir.join("wasm");
        let compiled_dir = dir.join("compiled");
        std::fs::create_dir_all(&wasm_dir)?;
        std::fs::create_dir_all(&compiled_dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(ArtifactCache {
            wasm_dir,
            compiled_dir,
            engine_key,
            mac_key: load_key(key_path)?,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("any key length")
    }

    fn tag(&self, compiled: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(compiled);
        hex::encode(mac.finalize().into_bytes())
    }

    fn authentic(&self, compiled: &[u8], tag_hex: &[u8]) -> bool {
        let Ok(tag) = hex::decode(tag_hex) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(compiled);
        // Constant time: the comparison must not leak how much of a forged tag was right.
        mac.verify_slice(&tag).is_ok()
    }

    fn checked(sha256: &str) -> io::Result<&str> {
        if is_sha256_hex(sha256) {
            Ok(sha256)
        } else {
            // The digest becomes a file name: never let it be a path.
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a lowercase hex sha256",
            ))
        }
    }

    fn wasm_path(&self, sha256: &str) -> PathBuf {
        self.wasm_dir.join(format!("{sha256}.wasm"))
    }

    fn compiled_path(&self, sha256: &str) -> PathBuf {
        self.compiled_dir
            .join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Writes both files; each appears whole or not at all (write to a temp file, rename).
    pub(crate) fn store(&self, sha256: &str, wasm: &[u8], compiled: &[u8]) -> io::Result<()> {
        let sha256 = Self::checked(sha256)?;
        write_atomic(&self.wasm_path(sha256), wasm)?;
        self.store_compiled(sha256, compiled)
    }

    /// The precompiled artifact for this engine, if present and made by a holder of the key.
    pub(crate) fn load_compiled(&self, sha256: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.compiled_path(Self::checked(sha256)?);
        let (Some(bytes), Some(digest)) = (
            read_if_exists(&path)?,
            read_if_exists(&path.with_extension("cwasm.hmac"))?,
        ) else {
            return Ok(None);
        };
        if !self.authentic(&bytes, &digest) {
            tracing::warn!(path = %path.display(), "precompiled artifact fails its authentication (corrupt or not ours); recompiling");
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// The original component, if present and matching its digest.
    pub(crate) fn load_wasm(&self, sha256: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.wasm_path(Self::checked(sha256)?);
        Ok(read_if_exists(&path)?.filter(|bytes| sha256_hex(bytes) == sha256))
    }

    /// Stores a freshly compiled artifact next to an existing `.wasm`.
    pub(crate) fn store_compiled(&self, sha256: &str, compiled: &[u8]) -> io::Result<()> {
        let path = self.compiled_path(Self::checked(sha256)?);
        write_atomic(
            &path.with_extension("cwasm.hmac"),
            self.tag(compiled).as_bytes(),
        )?;
        write_atomic(&path, compiled)
    }

    /// Deletes the component and every precompiled form of it (for any engine).
    pub(crate) fn remove(&self, sha256: &str) -> io::Result<()> {
        let sha256 = Self::checked(sha256)?;
        remove_if_exists(&self.wasm_path(sha256))?;
        for entry in std::fs::read_dir(&self.compiled_dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(sha256) {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }
}

fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // Unique per process and per write, so two installs of the same component racing each
    // other never rename one another's half-written file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    // Owner-only from the start: the artifact key must never exist readable by others,
    // not even between its write and a later chmod, and the artifacts need no wider access.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&tmp)?, bytes)?;
    std::fs::rename(&tmp, path)
}
