//! The `formula-engine` built-in ForgeHook: evaluates Excel-like formulas over JSON
//! variables, and aggregates records by group.
//!
//! The formula language is parsed here (parser.rs) rather than with a crate: it is small,
//! and owning it lets every error name its position in the formula.

mod aggregate;
mod eval;
mod functions;
mod parser;

use leforge_forgehook_sdk::{Error, ForgeHook};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use aggregate::{aggregate, AggregateInput, AggregateOutput};

/// Builds the ForgeHook: its manifest and endpoints.
pub fn hook() -> ForgeHook {
    ForgeHook::new(
        "formula-engine",
        "Formula engine",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Evaluates Excel-like formulas (arithmetic, comparisons, IF, SUM, VLOOKUP, text \
             functions) over JSON variables, and aggregates records per group (sum, average, \
             count, min, max), e.g. the total amount per region of a table.",
    )
    .category("data")
    .tags(&[
        "formula",
        "excel",
        "spreadsheet",
        "calculate",
        "aggregate",
        "group by",
    ])
    .author("LeForge")
    .memory_mb(128)
    .endpoint(
        "evaluate",
        "Evaluates an Excel-like formula and returns its value. Syntax: a leading '=' is \
             optional; numbers, \"text\" (\"\" for a quote), TRUE/FALSE, arrays {1,2;3,4} (',' \
             between columns, ';' between rows); operators + - * / ^ % & (text concatenation) \
             and = <> < > <= >= with Excel precedence (-2^2 = 4, 2^3^2 = 64). Variables are \
             referenced by name (dots reach into objects: order.total; arrays of records act as \
             tables). Functions: SUM, AVERAGE, MIN, MAX, COUNT, COUNTA, COUNTIF, SUMIF \
             (criteria like \">10\", \"<>x\", \"app*\"), IF, IFERROR, AND, OR, NOT, ROUND, \
             ROUNDUP, ROUNDDOWN, INT, ABS, MOD, POWER, SQRT, CONCAT, CONCATENATE, LEN, UPPER, \
             LOWER, TRIM, LEFT, RIGHT, MID, VLOOKUP(value, table, column, [approximate=TRUE]). \
             Results are rounded to 15 significant digits like a spreadsheet. Syntax errors and \
             unknown names are INVALID_INPUT and evaluation errors (#DIV/0!, #VALUE!, #N/A, \
             #NUM!, #REF!) are EVALUATION_ERROR; every message gives the 1-based position in the \
             formula.",
        evaluate,
    )
    .endpoint(
        "aggregate",
        "Totals (sum), averages, counts, minimums or maximums of a field per group: groups \
             records (JSON objects, or CSV text with a header line) by the value of `group_by` \
             and computes `op` (sum, avg, count, min, max) over `field` for each group and for \
             all records. Numeric text such as \"1,500\" \
             or \"$1,200.50\" counts as a number; blanks are skipped; other text is an error. \
             Sums are exact to the inputs' decimal places and whole results are integers. \
             Example: group_by=\"region\", field=\"amount\", op=\"sum\" -> {\"groups\": \
             {\"West\": 2700, \"East\": 2000}, \"total\": 4700}.",
        aggregate::aggregate,
    )
}

#[cfg(target_arch = "wasm32")]
leforge_forgehook_sdk::forgehook!(hook);

/// What went wrong in a formula, and where (1-based character position).
#[derive(Debug, Clone, PartialEq)]
pub struct FormulaError {
    pub pos: usize,
    pub message: String,
    /// Spreadsheet error value (`#DIV/0!`) for errors found while evaluating; `None` for
    /// syntax and name errors, which are mistakes in the formula itself.
    pub excel: Option<&'static str>,
}

impl FormulaError {
    pub fn syntax(pos: usize, message: impl Into<String>) -> Self {
        FormulaError {
            pos,
            message: message.into(),
            excel: None,
        }
    }

    /// Unknown variable or function, or a wrong number of arguments.
    pub fn name(pos: usize, message: impl Into<String>) -> Self {
        Self::syntax(pos, message)
    }

    pub fn eval(pos: usize, excel: &'static str, message: impl Into<String>) -> Self {
        FormulaError {
            pos,
            message: message.into(),
            excel: Some(excel),
        }
    }

    pub fn is_evaluation(&self) -> bool {
        self.excel.is_some()
    }

    fn into_error(self) -> Error {
        match self.excel {
            None => Error::invalid_input(format!("at position {}: {}", self.pos, self.message)),
            Some(code) => Error::new(
                "EVALUATION_ERROR",
                format!("{code} at position {}: {}", self.pos, self.message),
            ),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateInput {
    /// The formula, e.g. "=SUM(a, b) * 2", "IF(x > 10, \"big\", \"small\")" or
    /// "first & \" \" & last".
    pub formula: String,
    /// Values for the names used in the formula: numbers, text, booleans, null (blank),
    /// arrays (lists, or tables as arrays of rows/records) and objects (reached with dots).
    #[serde(default)]
    pub variables: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EvaluateOutput {
    /// The result: a number, text, boolean, array, or null for a blank.
    pub value: Value,
}

pub fn evaluate(input: EvaluateInput) -> Result<EvaluateOutput, Error> {
    let expr = parser::parse(&input.formula).map_err(FormulaError::into_error)?;
    let vars = input.variables.unwrap_or_default();
    let env = eval::Env { vars: &vars };
    let value = env.eval(&expr).map_err(FormulaError::into_error)?;
    if let eval::V::Num(n) = value {
        if !n.is_finite() {
            return Err(
                FormulaError::eval(1, "#NUM!", "the result is not a finite number").into_error(),
            );
        }
    }
    Ok(EvaluateOutput {
        value: value.into_json(),
    })
}

/// Integral values as JSON integers (`2700`, not `2700.0`); `None` for NaN and infinities.
pub(crate) fn json_number(x: f64) -> Option<serde_json::Number> {
    // 2^53: beyond it not every integer is representable, so i64 would invent precision.
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        Some(serde_json::Number::from(x as i64))
    } else {
        serde_json::Number::from_f64(x)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// Calls an endpoint through the SDK with JSON, as the host would.
    pub fn call(endpoint: &str, input: Value) -> Result<Value, leforge_forgehook_sdk::Error> {
        super::hook()
            .invoke(endpoint, &input.to_string())
            .map(|out| serde_json::from_str(&out).unwrap())
    }

    /// The error code and message of a call that must fail.
    pub fn fail(endpoint: &str, input: Value) -> (String, String) {
        let e = call(endpoint, input).unwrap_err();
        (e.code, e.message)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::{json, Value};

    fn ev(formula: &str, vars: Value) -> Value {
        call("evaluate", json!({"formula": formula, "variables": vars}))
            .unwrap_or_else(|e| panic!("{formula}: {e}"))["value"]
            .clone()
    }

    fn e(formula: &str) -> Value {
        ev(formula, json!({}))
    }

    #[test]
    fn arithmetic_and_precedence() {
        for (f, want) in [
            ("1+2*3", json!(7)),
            ("(1+2)*3", json!(9)),
            ("10-4-3", json!(3)),
            ("8/4/2", json!(1)),
            ("2^3*2", json!(16)),
            ("-2^2", json!(4)),
            ("2^3^2", json!(64)),
            ("-(2^2)", json!(-4)),
            ("50%*10", json!(5)),
            ("0.1+0.2", json!(0.3)),
            ("7/2", json!(3.5)),
            ("=1e3+.5", json!(1000.5)),
            ("\"3\"+1", json!(4)),
            ("TRUE+1", json!(2)),
        ] {
            assert_eq!(e(f), want, "{f}");
        }
    }

    #[test]
    fn comparisons_text_and_logic() {
        for (f, want) in [
            ("1<2", json!(true)),
            ("\"abc\"=\"ABC\"", json!(true)),
            ("\"a\"<>\"b\"", json!(true)),
            ("2>=2", json!(true)),
            ("1<\"a\"", json!(true)),
            ("\"Total: \"&1500&\" USD\"", json!("Total: 1500 USD")),
            ("1.5&\"\"", json!("1.5")),
            ("TRUE&\"\"", json!("TRUE")),
            ("IF(5 > 10, \"big\", \"small\")", json!("small")),
            ("IF(FALSE, 1)", json!(false)),
            ("IF(1, 1/1, 1/0)", json!(1)),
            ("AND(TRUE, 1, {TRUE, TRUE})", json!(true)),
            ("OR(FALSE, 0)", json!(false)),
            ("NOT(FALSE)", json!(true)),
            ("\"say \"\"hi\"\"\"", json!("say \"hi\"")),
        ] {
            assert_eq!(e(f), want, "{f}");
        }
    }

    #[test]
    fn functions() {
        for (f, want) in [
            ("=SUM(1, 2) * 2", json!(6)),
            ("SUM({1,2,3}, \"4\")", json!(10)),
            ("AVERAGE(1, 2, 3, 4)", json!(2.5)),
            ("MIN({4, 2, 8})", json!(2)),
            ("MAX(4, 2, 8)", json!(8)),
            ("COUNT({1, \"a\", 2, TRUE})", json!(2)),
            ("COUNTA({1, \"a\", TRUE})", json!(3)),
            ("COUNTIF({1, 5, 10, 20}, \">=10\")", json!(2)),
            (
                "COUNTIF({\"apple\", \"apricot\", \"banana\"}, \"ap*\")",
                json!(2),
            ),
            ("COUNTIF({\"a\", \"b\", \"a\"}, \"a\")", json!(2)),
            ("COUNTIF({1, 2, 2}, 2)", json!(2)),
            ("SUMIF({1, 5, 10}, \">2\")", json!(15)),
            (
                "SUMIF({\"W\", \"E\", \"W\"}, \"W\", {1500, 2000, 1200})",
                json!(2700),
            ),
            ("ROUND(2.675, 2)", json!(2.68)),
            ("ROUND(-2.5)", json!(-3)),
            ("ROUND(1234, -2)", json!(1200)),
            ("ROUNDUP(1.21, 1)", json!(1.3)),
            ("ROUNDDOWN(-1.29, 1)", json!(-1.2)),
            ("INT(-1.5)", json!(-2)),
            ("ABS(-3)", json!(3)),
            ("MOD(-3, 2)", json!(1)),
            ("POWER(2, 10)", json!(1024)),
            ("SQRT(16)", json!(4)),
            ("CONCAT(\"a\", 1, {\"b\", \"c\"})", json!("a1bc")),
            ("CONCATENATE(\"x\", \"y\")", json!("xy")),
            ("LEN(\"héllo\")", json!(5)),
            ("UPPER(\"abc\")", json!("ABC")),
            ("lower(\"ABC\")", json!("abc")),
            ("TRIM(\"  a   b  \")", json!("a b")),
            (
                "LEFT(\"hello\", 2) & RIGHT(\"hello\") & MID(\"hello\", 2, 3)",
                json!("heoell"),
            ),
            ("IFERROR(1/0, \"n/a\")", json!("n/a")),
            ("{1,2;3,4}", json!([[1, 2], [3, 4]])),
        ] {
            assert_eq!(e(f), want, "{f}");
        }
    }

    #[test]
    fn vlookup_over_arrays() {
        let vars = json!({
            "prices": [["apple", 1.5], ["banana", 0.25], ["cherry", 3]],
            "tiers": [[0, "bronze"], [100, "silver"], [500, "gold"]],
            "people": [{"id": 7, "name": "Ann"}, {"id": 9, "name": "Bo"}]
        });
        assert_eq!(
            ev("VLOOKUP(\"Banana\", prices, 2, FALSE)", vars.clone()),
            json!(0.25)
        );
        assert_eq!(ev("VLOOKUP(250, tiers, 2)", vars.clone()), json!("silver"));
        assert_eq!(
            ev("VLOOKUP(9, people, 2, FALSE)", vars.clone()),
            json!("Bo")
        );
        assert_eq!(
            ev("VLOOKUP(2, {1,\"a\";2,\"b\"}, 2, FALSE)", json!({})),
            json!("b")
        );
        let (code, msg) = fail(
            "evaluate",
            json!({"formula": "VLOOKUP(\"kiwi\", prices, 2, FALSE)", "variables": vars}),
        );
        assert_eq!(code, "EVALUATION_ERROR");
        assert_eq!(msg, "#N/A at position 1: VLOOKUP found no row for \"kiwi\"");
        let (code, msg) = fail(
            "evaluate",
            json!({"formula": "VLOOKUP(\"apple\", prices, 3, FALSE)", "variables": vars}),
        );
        assert_eq!(code, "EVALUATION_ERROR");
        assert_eq!(
            msg,
            "#REF! at position 26: VLOOKUP's column 3 is past the row's 2 columns"
        );
    }

    #[test]
    fn variables() {
        let vars = json!({"a": 2, "b": 3, "x": 15, "first": "Ada", "order": {"total": 40, "items": [1, 2]}, "blank": null});
        assert_eq!(ev("=SUM(a, b) * 2", vars.clone()), json!(10));
        assert_eq!(
            ev("IF(x > 10, \"big\", \"small\")", vars.clone()),
            json!("big")
        );
        assert_eq!(ev("first & \"!\"", vars.clone()), json!("Ada!"));
        assert_eq!(
            ev("order.total + SUM(order.items)", vars.clone()),
            json!(43)
        );
        assert_eq!(ev("A + B", vars.clone()), json!(5));
        assert_eq!(ev("blank + 1", vars.clone()), json!(1));
        assert_eq!(ev("order.items", vars), json!([1, 2]));
    }

    #[test]
    fn errors_name_the_position() {
        for (formula, code, msg) in [
            ("=1 + * 2", "INVALID_INPUT", "at position 6: expected a value, found operator `*`"),
            ("SUM(1, 2", "INVALID_INPUT", "at position 9: expected `,` or `)` in the arguments of SUM opened at position 4, found the end of the formula"),
            ("1 + nope", "INVALID_INPUT", "at position 5: unknown name `nope`: no variables were given"),
            ("FOO(1)", "INVALID_INPUT", "at position 1: unknown function FOO; available: SUM, AVERAGE, MIN, MAX, COUNT, COUNTA, COUNTIF, SUMIF, IF, IFERROR, AND, OR, NOT, ROUND, ROUNDUP, ROUNDDOWN, INT, ABS, MOD, POWER, SQRT, CONCAT, CONCATENATE, LEN, UPPER, LOWER, TRIM, LEFT, RIGHT, MID, VLOOKUP"),
            ("IF(1)", "INVALID_INPUT", "at position 1: IF takes 2 to 3 argument(s), got 1"),
            ("10 / (5 - 5)", "EVALUATION_ERROR", "#DIV/0! at position 4: division by zero"),
            ("1 + \"abc\"", "EVALUATION_ERROR", "#VALUE! at position 5: \"abc\" is not a number"),
            ("AVERAGE({\"a\"})", "EVALUATION_ERROR", "#DIV/0! at position 1: AVERAGE of no numbers"),
            ("SQRT(-1)", "EVALUATION_ERROR", "#NUM! at position 1: SQRT of a negative number"),
            ("10^400", "EVALUATION_ERROR", "#NUM! at position 3: `^` gives a number too large or undefined"),
            ("", "INVALID_INPUT", "at position 1: the formula is empty"),
        ] {
            let (c, m) = fail("evaluate", json!({"formula": formula}));
            assert_eq!((c.as_str(), m.as_str()), (code, msg), "{formula}");
        }
        let (code, msg) = fail(
            "evaluate",
            json!({"formula": "o + 1", "variables": {"o": {"a": 1}}}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert_eq!(
            msg,
            "at position 1: variable `o` is an object; name one of its fields, e.g. `o.field`"
        );
        let (code, _) = fail("evaluate", json!({"formula": 1}));
        assert_eq!(code, "INVALID_INPUT");
        let (code, _) = fail("evaluate", json!({"formula": "1", "variables": [1]}));
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn manifest_lists_the_contract_endpoints() {
        let m = super::hook().manifest();
        assert_eq!(m["id"], "formula-engine");
        let eps = m["endpoints"].as_array().unwrap();
        assert_eq!(
            eps.iter().map(|e| e["name"].clone()).collect::<Vec<_>>(),
            [json!("evaluate"), json!("aggregate")]
        );
        let agg = &eps[1]["input_schema"]["properties"];
        assert_eq!(
            agg["op"]["enum"],
            json!(["sum", "avg", "count", "min", "max"])
        );
        assert!(agg["field"]["description"]
            .as_str()
            .unwrap()
            .contains("1,500"));
    }
}
