//! Tool names and call ids as providers accept them.
//!
//! Canonical tool names (`<forgehook-id>__<endpoint>`) may hold characters or lengths that
//! providers reject, and one bad name fails the whole request. Each request gets its own
//! [`NameMap`]: canonical → wire name, and the exact reverse so responses come back in
//! canonical names.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// The strictest common rule (OpenAI, Anthropic, Bedrock): `^[a-zA-Z0-9_-]{1,64}$`.
pub const MAX_NAME_LEN: usize = 64;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(allowed)
}

/// 8 hex chars of SHA-256: short enough to fit the 64-char limit, long enough that two
/// tools of one agent colliding again is not a practical concern.
fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(&digest[..4])
}

fn replace_invalid(name: &str) -> String {
    name.chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect()
}

/// `name` truncated to leave room for `_<hash>` and suffixed.
fn with_hash(base: &str, original: &str) -> String {
    let keep = MAX_NAME_LEN - 9;
    let base: String = base.chars().take(keep).collect();
    format!("{base}_{}", short_hash(original))
}

/// Per-request mapping between canonical and wire tool names.
#[derive(Debug, Default, Clone)]
pub struct NameMap {
    to_wire: HashMap<String, String>,
    to_canonical: HashMap<String, String>,
}

impl NameMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `canonical` (idempotent) and returns its wire name. Valid names are kept
    /// as they are, so the common case is readable in provider logs.
    pub fn wire(&mut self, canonical: &str) -> String {
        if let Some(w) = self.to_wire.get(canonical) {
            return w.clone();
        }
        let mut candidate = if is_valid_name(canonical) {
            canonical.to_string()
        } else {
            let replaced = replace_invalid(canonical);
            if replaced.is_empty() {
                with_hash("tool", canonical)
            } else if replaced.len() > MAX_NAME_LEN {
                with_hash(&replaced, canonical)
            } else {
                replaced
            }
        };
        if self.to_canonical.contains_key(&candidate) {
            candidate = with_hash(&replace_invalid(canonical), canonical);
        }
        // A hash collision among one request's tools is astronomically unlikely, but the
        // reverse map must stay exact, so fall back to a counter rather than overwrite.
        let mut n = 0u32;
        let base = candidate.clone();
        while self.to_canonical.contains_key(&candidate) {
            n += 1;
            let suffix = format!("_{n}");
            let keep: String = base.chars().take(MAX_NAME_LEN - suffix.len()).collect();
            candidate = format!("{keep}{suffix}");
        }
        self.to_wire
            .insert(canonical.to_string(), candidate.clone());
        self.to_canonical
            .insert(candidate.clone(), canonical.to_string());
        candidate
    }

    /// The canonical name for a wire name from a response. Names the model invented are
    /// passed through so the loop can answer them with an "unknown tool" result.
    pub fn canonical(&self, wire: &str) -> String {
        self.to_canonical
            .get(wire)
            .cloned()
            .unwrap_or_else(|| wire.to_string())
    }

    /// Whether `wire` names a tool registered in this map.
    pub fn knows_wire(&self, wire: &str) -> bool {
        self.to_canonical.contains_key(wire)
    }
}

/// Call ids as Anthropic and Bedrock accept them (`^[a-zA-Z0-9_-]{1,64}$`). Ids from
/// another provider (or one we generated) may not fit; the same input always gives the
/// same output, so a call and its result stay paired without a map.
pub fn sanitize_call_id(id: &str) -> String {
    if is_valid_name(id) {
        return id.to_string();
    }
    with_hash(&replace_invalid(id), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept() {
        let mut m = NameMap::new();
        assert_eq!(m.wire("csv-tools__parse"), "csv-tools__parse");
        assert_eq!(m.canonical("csv-tools__parse"), "csv-tools__parse");
    }

    #[test]
    fn invalid_chars_and_collisions_round_trip() {
        let mut m = NameMap::new();
        let a = m.wire("my.hook__run");
        let b = m.wire("my_hook__run");
        let c = m.wire("my/hook__run");
        for w in [&a, &b, &c] {
            assert!(is_valid_name(w), "{w}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert_eq!(m.canonical(&a), "my.hook__run");
        assert_eq!(m.canonical(&b), "my_hook__run");
        assert_eq!(m.canonical(&c), "my/hook__run");
        assert_eq!(m.wire("my.hook__run"), a);
    }

    #[test]
    fn long_names_are_shortened_uniquely() {
        let mut m = NameMap::new();
        let long1 = format!("{}__a", "x".repeat(80));
        let long2 = format!("{}__b", "x".repeat(80));
        let w1 = m.wire(&long1);
        let w2 = m.wire(&long2);
        assert!(is_valid_name(&w1) && is_valid_name(&w2));
        assert_ne!(w1, w2);
        assert_eq!(m.canonical(&w1), long1);
        assert_eq!(m.canonical(&w2), long2);
    }

    #[test]
    fn call_ids() {
        assert_eq!(sanitize_call_id("call_abc-1"), "call_abc-1");
        let s = sanitize_call_id("call:abc/1");
        assert!(is_valid_name(&s));
        assert_eq!(s, sanitize_call_id("call:abc/1"));
        assert_ne!(s, sanitize_call_id("call_abc_1"));
    }
}
