//! ForgeHooks as installed on this server: the manifest in force plus the install's own
//! state (enabled, per-install configuration, where its code lives).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::forgehook::Manifest;

/// An installed ForgeHook as stored. `config` holds plain values, secrets included: it must
/// never be returned to clients as is (see `public_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledForgehook {
    pub id: String,
    pub manifest: Manifest,
    /// SHA-256 of the `.wasm` for WASM ForgeHooks.
    pub wasm_sha256: Option<String>,
    pub enabled: bool,
    /// Installed by the server itself on first start.
    pub builtin: bool,
    pub config: BTreeMap<String, String>,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an install or upgrade writes. On upgrade the enabled flag and configuration of the
/// previous version are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInstalledForgehook {
    pub manifest: Manifest,
    pub wasm_sha256: Option<String>,
    pub builtin: bool,
}

/// The text shown instead of a secret's value.
pub const SECRET_MASK: &str = "********";

impl InstalledForgehook {
    /// The configuration with every secret's value masked, safe to return.
    pub fn public_config(&self) -> BTreeMap<String, String> {
        // `config_keys` includes a container's environment variables, whose secrets are
        // masked the same way.
        let keys = self.manifest.config_keys();
        self.config
            .iter()
            .map(|(k, v)| {
                let secret = keys.iter().any(|c| c.name == *k && c.secret);
                (
                    k.clone(),
                    if secret {
                        SECRET_MASK.to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }
}
