//! Rhai's errors turned into the runtime's: [`HookError`] for a hook call, [`ScriptError`]
//! for a script that does not compile.

use leforge_core::hook::{HookError, HookLimit, HookPoint};
use rhai::{EvalAltResult, ParseError, ParseErrorType, Position};
use serde::Serialize;

use crate::helpers::HelperError;

/// The token `on_progress` returns when a call passes its deadline; also used when a
/// `forgehook()` call does.
pub const DEADLINE_TOKEN: &str = HookLimit::TIME;
/// The token `on_progress` returns when a call allocated more than its memory budget.
pub const MEMORY_TOKEN: &str = HookLimit::MEMORY;

/// One problem in a script's source, with a 1-based position (0 when the parser cannot
/// place it, e.g. an unexpected end of input at the very start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

fn line_column(pos: Position) -> (Option<u32>, Option<u32>) {
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (pos.line().map(to_u32), pos.position().map(to_u32))
}

pub fn script_error(err: &ParseError) -> ScriptError {
    let (line, column) = line_column(err.1);
    ScriptError {
        line: line.unwrap_or(0),
        column: column.unwrap_or(0),
        message: err.0.to_string(),
    }
}

/// Maps an evaluation error of `script`'s `hook`. Errors raised inside functions arrive
/// wrapped once per call level; the innermost one says what happened and where.
pub fn eval_failure(script: &str, hook: HookPoint, err: Box<EvalAltResult>) -> HookError {
    let mut inner = err;
    let mut at = inner.position();
    // The script whose text `at` refers to: an error inside an imported module is placed in
    // that module's source.
    let mut located_in = script.to_string();
    while matches!(
        *inner,
        EvalAltResult::ErrorInFunctionCall(..) | EvalAltResult::ErrorInModule(..)
    ) {
        inner = match *inner {
            EvalAltResult::ErrorInFunctionCall(_, source, next, pos) => {
                if !pos.is_none() {
                    at = pos;
                }
                // Compiled ASTs carry their script's name as the source.
                if !source.is_empty() {
                    located_in = source;
                }
                next
            }
            EvalAltResult::ErrorInModule(module, next, pos) => {
                if !pos.is_none() {
                    at = pos;
                }
                located_in = module;
                next
            }
            // Excluded by the loop condition.
            other => Box::new(other),
        };
    }
    if !inner.position().is_none() {
        at = inner.position();
    }
    let limit = |name: &str| HookError::LimitExceeded {
        script: script.to_string(),
        limit: name.to_string(),
    };
    match *inner {
        EvalAltResult::ErrorTooManyOperations(_) => limit(HookLimit::MAX_OPERATIONS),
        EvalAltResult::ErrorStackOverflow(_) => limit(HookLimit::CALL_DEPTH),
        EvalAltResult::ErrorTooManyModules(_) => limit(HookLimit::MODULES),
        EvalAltResult::ErrorTooManyVariables(_) => limit(HookLimit::VARIABLES),
        EvalAltResult::ErrorDataTooLarge(ref what, _) => {
            let what = what.to_ascii_lowercase();
            if what.contains("map") {
                limit(HookLimit::MAP_SIZE)
            } else if what.contains("array") || what.contains("blob") {
                limit(HookLimit::ARRAY_SIZE)
            } else {
                limit(HookLimit::STRING_SIZE)
            }
        }
        EvalAltResult::ErrorTerminated(token, _) => limit(
            &token
                .into_string()
                .unwrap_or_else(|_| DEADLINE_TOKEN.to_string()),
        ),
        EvalAltResult::ErrorParsing(ParseErrorType::ExprTooDeep, _) => {
            limit(HookLimit::EXPRESSION_DEPTH)
        }
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(helper) = value.read_lock::<HelperError>().map(|h| h.clone()) {
                let (line, column) = line_column(at);
                HookError::Runtime {
                    script: located_in,
                    line,
                    column,
                    message: helper.to_string(),
                }
            } else {
                HookError::Rejected {
                    script: script.to_string(),
                    hook,
                    reason: thrown_reason(&value),
                }
            }
        }
        mut other => {
            other.clear_position();
            let (line, column) = line_column(at);
            HookError::Runtime {
                script: located_in,
                line,
                column,
                message: other.to_string(),
            }
        }
    }
}

/// `throw "reason"` gives the string; `throw #{message: …}` (Apollo's form) its message;
/// anything else its display form.
fn thrown_reason(value: &rhai::Dynamic) -> String {
    if value.is_string() {
        return value.clone().into_string().unwrap_or_default();
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        if let Some(message) = map.get("message") {
            return message.to_string();
        }
    }
    value.to_string()
}
