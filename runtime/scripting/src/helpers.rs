//! The helpers every script sees that need no per-call state: `json_parse`, `json_stringify`,
//! `regex_match`, `regex_replace`, `now_iso`, and the [`HelperError`] they throw. The
//! per-call ones (`log_*`, `forgehook`, `print`) are registered by the runner for each call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regex::{Regex, RegexBuilder};
use rhai::{Dynamic, EvalAltResult, Module, Position, Shared};

use crate::convert;

/// What a helper throws. A type of its own (scripts cannot construct one) so that the
/// runner tells a helper's failure (`HOOK_ERROR`) from a script's own `throw`
/// (`HOOK_REJECTED`). Scripts may `catch` it and read `e.code` and `e.message`.
#[derive(Debug, Clone, PartialEq)]
pub struct HelperError {
    pub helper: &'static str,
    /// e.g. `INVALID_JSON`, `INVALID_REGEX`, `NOT_ALLOWED`, or a ForgeHook's tool error code.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for HelperError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.helper, self.message, self.code)
    }
}

impl HelperError {
    pub fn new(helper: &'static str, code: &str, message: impl Into<String>) -> Self {
        HelperError {
            helper,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn into_eval(self) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from(self),
            Position::NONE,
        ))
    }
}

/// Limits of the regex helpers. The `regex` crate runs in linear time, so only the size of
/// the compiled program needs a cap.
#[derive(Debug, Clone, Copy)]
pub struct RegexLimits {
    pub max_pattern_len: usize,
    pub max_compiled_bytes: usize,
    /// The engine's string limit, which string-building helpers check before they build.
    pub max_string_bytes: usize,
}

/// The same error as Rhai's own string limit, so the call ends as `string_size` exceeded.
fn too_large(helper: &'static str, projected: usize, max: usize) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorDataTooLarge(
        format!("Length of string (the result of {helper} would be {projected} bytes, over {max})"),
        Position::NONE,
    ))
}

/// `text.replace(find, with)` with the result's size checked before it is built: the
/// standard package's version builds the whole result first, and Rhai checks it only after
/// the call returns, so a 1 MiB string whose every byte becomes 1 KiB was a 1 GiB allocation.
fn replace_checked(
    text: &mut rhai::ImmutableString,
    find: &str,
    with: &str,
    max: usize,
) -> Result<(), Box<EvalAltResult>> {
    if text.is_empty() || find.is_empty() {
        return Ok(());
    }
    if with.len() > find.len() {
        let hits = text.matches(find).count();
        let projected = text.len() + hits * (with.len() - find.len());
        if projected > max {
            return Err(too_large("replace", projected, max));
        }
    }
    *text = text.replace(find, with).into();
    Ok(())
}

/// Appends each replacement only while the result stays within the limit. A replacement's
/// size is bounded before it is expanded: its literal text plus, per `$` group reference,
/// at most the whole match.
struct Bounded<'r> {
    replacement: &'r str,
    refs: usize,
    max: usize,
    over: Option<usize>,
}

impl regex::Replacer for Bounded<'_> {
    fn replace_append(&mut self, caps: &regex::Captures<'_>, dst: &mut String) {
        if self.over.is_some() {
            return;
        }
        let whole = caps.get(0).map_or(0, |m| m.len());
        let bound = self.replacement.len() + self.refs * whole;
        if dst.len() + bound > self.max {
            self.over = Some(dst.len() + bound);
            return;
        }
        caps.expand(self.replacement, dst);
    }
}

/// Scripts pass the same few patterns on every call; compiling them each time would dominate
/// a redaction hook. Bounded by clearing: patterns are few in practice, and a script that
/// generates patterns only loses the cache, never memory.
struct RegexCache {
    limits: RegexLimits,
    compiled: Mutex<HashMap<String, Regex>>,
}

const REGEX_CACHE_ENTRIES: usize = 256;

impl RegexCache {
    fn get(&self, helper: &'static str, pattern: &str) -> Result<Regex, Box<EvalAltResult>> {
        if let Some(re) = self.lock().get(pattern) {
            return Ok(re.clone());
        }
        if pattern.len() > self.limits.max_pattern_len {
            return Err(HelperError::new(
                helper,
                "INVALID_REGEX",
                format!(
                    "the pattern is {} bytes long; the limit is {}",
                    pattern.len(),
                    self.limits.max_pattern_len
                ),
            )
            .into_eval());
        }
        let re = RegexBuilder::new(pattern)
            .size_limit(self.limits.max_compiled_bytes)
            .dfa_size_limit(self.limits.max_compiled_bytes)
            .build()
            .map_err(|e| HelperError::new(helper, "INVALID_REGEX", e.to_string()).into_eval())?;
        let mut cache = self.lock();
        if cache.len() >= REGEX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Regex>> {
        // A panic while holding the lock cannot leave the map inconsistent; keep using it.
        self.compiled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds the shared module of stateless helpers, once per runner.
pub fn module(regex_limits: RegexLimits) -> Shared<Module> {
    let mut m = Module::new();
    let regexes = Arc::new(RegexCache {
        limits: regex_limits,
        compiled: Mutex::new(HashMap::new()),
    });

    m.set_custom_type::<HelperError>("HelperError");
    m.set_getter_fn("code", |e: &mut HelperError| Ok(e.code.clone()));
    m.set_getter_fn("message", |e: &mut HelperError| Ok(e.message.clone()));
    m.set_getter_fn("helper", |e: &mut HelperError| Ok(e.helper.to_string()));
    m.set_native_fn("to_string", |e: &mut HelperError| Ok(e.to_string()));
    m.set_native_fn("to_debug", |e: &mut HelperError| Ok(e.to_string()));

    m.set_native_fn("json_parse", |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map(|v| convert::to_dynamic(&v))
            .map_err(|e| HelperError::new("json_parse", "INVALID_JSON", e.to_string()).into_eval())
    });
    m.set_native_fn("json_stringify", |value: Dynamic| {
        let json = convert::to_json(&value)
            .map_err(|e| HelperError::new("json_stringify", "INVALID_VALUE", e).into_eval())?;
        Ok(json.to_string())
    });

    let r = regexes.clone();
    m.set_native_fn("regex_match", move |text: &str, pattern: &str| {
        Ok(r.get("regex_match", pattern)?.is_match(text))
    });
    let max = regex_limits.max_string_bytes;
    let r = regexes;
    m.set_native_fn(
        "regex_replace",
        move |text: &str, pattern: &str, replacement: &str| {
            let re = r.get("regex_replace", pattern)?;
            let mut bounded = Bounded {
                replacement,
                refs: replacement.matches('$').count(),
                max,
                over: None,
            };
            let out = re
                .replace_all(text, regex::Replacer::by_ref(&mut bounded))
                .into_owned();
            match bounded.over {
                Some(projected) => Err(too_large("regex_replace", projected, max)),
                None => Ok(out),
            }
        },
    );

    // Shadow the standard package's `replace` (registered after it) with sized versions.
    m.set_native_fn(
        "replace",
        move |text: &mut rhai::ImmutableString, find: &str, with: &str| {
            replace_checked(text, find, with, max)
        },
    );
    m.set_native_fn(
        "replace",
        move |text: &mut rhai::ImmutableString, find: &str, with: char| {
            replace_checked(text, find, with.encode_utf8(&mut [0; 4]), max)
        },
    );
    m.set_native_fn(
        "replace",
        move |text: &mut rhai::ImmutableString, find: char, with: &str| {
            replace_checked(text, find.encode_utf8(&mut [0; 4]), with, max)
        },
    );
    m.set_native_fn(
        "replace",
        move |text: &mut rhai::ImmutableString, find: char, with: char| {
            replace_checked(
                text,
                find.encode_utf8(&mut [0; 4]),
                with.encode_utf8(&mut [0; 4]),
                max,
            )
        },
    );

    m.set_native_fn("now_iso", || {
        Ok(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    });

    // The standard package's `sleep` would block the worker past every deadline (on_progress
    // does not fire inside a native call). This module is registered after the standard one,
    // so these shadow it.
    m.set_native_fn("sleep", |_: rhai::INT| -> Result<(), Box<EvalAltResult>> {
        Err(
            HelperError::new("sleep", "NOT_AVAILABLE", "sleep is not available in hooks")
                .into_eval(),
        )
    });
    m.set_native_fn(
        "sleep",
        |_: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> {
            Err(
                HelperError::new("sleep", "NOT_AVAILABLE", "sleep is not available in hooks")
                    .into_eval(),
            )
        },
    );

    m.build_index();
    Shared::new(m)
}
