//! Evaluates a parsed formula against JSON variables, with Excel's coercions: text that
//! looks like a number counts as one in arithmetic, TRUE/FALSE are 1/0, a blank is 0 or "".

use serde_json::{Map, Value};

use crate::parser::{op_text, BinOp, Expr, Kind};
use crate::FormulaError;

/// A value during evaluation. Arrays are rows (a 2-D table is an array of arrays).
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Num(f64),
    Text(String),
    Bool(bool),
    Empty,
    Array(Vec<V>),
}

impl V {
    pub fn into_json(self) -> Value {
        match self {
            V::Num(n) => crate::json_number(tidy(n))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            V::Text(s) => Value::String(s),
            V::Bool(b) => Value::Bool(b),
            V::Empty => Value::Null,
            V::Array(items) => Value::Array(items.into_iter().map(V::into_json).collect()),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            V::Num(_) => "a number",
            V::Text(_) => "text",
            V::Bool(_) => "a boolean",
            V::Empty => "blank",
            V::Array(_) => "an array",
        }
    }
}

/// Rounds to 15 significant digits, as spreadsheets display, so 0.1+0.2 gives 0.3.
pub fn tidy(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.14e}").parse().unwrap_or(x)
}

fn from_json(v: &Value, name: &str, pos: usize) -> Result<V, FormulaError> {
    Ok(match v {
        Value::Null => V::Empty,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => V::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => V::Text(s.clone()),
        Value::Array(items) => V::Array(
            items
                .iter()
                .map(|item| match item {
                    // Rows given as objects (records) become rows of their values, so that
                    // VLOOKUP and SUM work on a list of records too.
                    Value::Object(map) => Ok(V::Array(
                        map.values()
                            .map(|x| from_json(x, name, pos))
                            .collect::<Result<_, _>>()?,
                    )),
                    other => from_json(other, name, pos),
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(_) => {
            return Err(FormulaError::name(
                pos,
                format!(
                    "variable `{name}` is an object; name one of its fields, e.g. `{name}.field`"
                ),
            ))
        }
    })
}

pub struct Env<'a> {
    pub vars: &'a Map<String, Value>,
}

impl Env<'_> {
    fn lookup(&self, name: &str, pos: usize) -> Result<V, FormulaError> {
        if let Some(v) = self.vars.get(name) {
            return from_json(v, name, pos);
        }
        // `order.total` walks into objects; names are matched case-insensitively as a
        // fallback because spreadsheet names are.
        let mut current: Option<&Value> = None;
        for (i, part) in name.split('.').enumerate() {
            let map = match (i, current) {
                (0, _) => self.vars,
                (_, Some(Value::Object(m))) => m,
                _ => break,
            };
            current = map.get(part).or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(part))
                    .map(|(_, v)| v)
            });
            if current.is_none() {
                break;
            }
        }
        match current {
            Some(v) => from_json(v, name, pos),
            _ => {
                let known: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                Err(FormulaError::name(
                    pos,
                    if known.is_empty() {
                        format!("unknown name `{name}`: no variables were given")
                    } else {
                        format!(
                            "unknown name `{name}`; the variables are: {}",
                            known.join(", ")
                        )
                    },
                ))
            }
        }
    }

    pub fn eval(&self, e: &Expr) -> Result<V, FormulaError> {
        match &e.kind {
            Kind::Number(n) => Ok(V::Num(*n)),
            Kind::Text(s) => Ok(V::Text(s.clone())),
            Kind::Bool(b) => Ok(V::Bool(*b)),
            Kind::Var(name) => self.lookup(name, e.pos),
            Kind::Neg(inner) => Ok(V::Num(-num(&self.eval(inner)?, inner.pos)?)),
            Kind::Percent(inner) => Ok(V::Num(num(&self.eval(inner)?, inner.pos)? / 100.0)),
            Kind::Array(rows) => {
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let cells = row
                        .iter()
                        .map(|c| self.eval(c))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.push(V::Array(cells));
                }
                // A single row `{1, 2, 3}` is a plain list.
                if out.len() == 1 {
                    return Ok(out.pop().unwrap_or(V::Empty));
                }
                Ok(V::Array(out))
            }
            Kind::Binary(op, l, r) => {
                let (a, b) = (self.eval(l)?, self.eval(r)?);
                binary(*op, a, b, e.pos, l.pos, r.pos)
            }
            Kind::Call(name, args) => crate::functions::call(self, name, args, e.pos),
        }
    }
}

/// A value as a number for arithmetic, or `#VALUE!` naming where it came from.
pub fn num(v: &V, pos: usize) -> Result<f64, FormulaError> {
    match v {
        V::Num(n) => Ok(*n),
        V::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        V::Empty => Ok(0.0),
        V::Text(s) => parse_number(s)
            .ok_or_else(|| FormulaError::eval(pos, "#VALUE!", format!("{s:?} is not a number"))),
        V::Array(_) => Err(FormulaError::eval(
            pos,
            "#VALUE!",
            "an array cannot be used as a single number here; use SUM, MIN, ... on it",
        )),
    }
}

/// Text that spreadsheets accept as a number: `12`, `-1.5`, `+3`, `1e3`, ` 4 `.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A value as text for `&` and the text functions.
pub fn text(v: &V, pos: usize) -> Result<String, FormulaError> {
    match v {
        V::Text(s) => Ok(s.clone()),
        V::Num(n) => Ok(format_number(*n)),
        V::Bool(true) => Ok("TRUE".into()),
        V::Bool(false) => Ok("FALSE".into()),
        V::Empty => Ok(String::new()),
        V::Array(_) => Err(FormulaError::eval(
            pos,
            "#VALUE!",
            "an array cannot be used as text here; use CONCAT on it",
        )),
    }
}

pub fn format_number(n: f64) -> String {
    let n = tidy(n);
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

pub fn truthy(v: &V, pos: usize) -> Result<bool, FormulaError> {
    match v {
        V::Bool(b) => Ok(*b),
        V::Num(n) => Ok(*n != 0.0),
        V::Empty => Ok(false),
        V::Text(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        V::Text(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(FormulaError::eval(
            pos,
            "#VALUE!",
            format!("expected TRUE or FALSE, got {}", other.type_name()),
        )),
    }
}

/// Excel's ordering across types: numbers < text < booleans; text compares ignoring case; a
/// blank is 0, "" or FALSE next to a value of that type.
pub fn compare(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    fn rank(v: &V) -> u8 {
        match v {
            V::Num(_) | V::Empty => 0,
            V::Text(_) => 1,
            V::Bool(_) => 2,
            V::Array(_) => 3,
        }
    }
    match (a, b) {
        (V::Empty, V::Text(t)) => Some(String::new().cmp(&t.to_lowercase())),
        (V::Text(t), V::Empty) => Some(t.to_lowercase().cmp(&String::new())),
        (V::Empty, V::Bool(x)) => Some(false.cmp(x)),
        (V::Bool(x), V::Empty) => Some(x.cmp(&false)),
        (V::Num(_) | V::Empty, V::Num(_) | V::Empty) => {
            let f = |v: &V| if let V::Num(n) = v { *n } else { 0.0 };
            f(a).partial_cmp(&f(b))
        }
        (V::Text(x), V::Text(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Array(_), _) | (_, V::Array(_)) => None,
        _ => Some(rank(a).cmp(&rank(b))),
    }
}

fn binary(op: BinOp, a: V, b: V, pos: usize, lpos: usize, rpos: usize) -> Result<V, FormulaError> {
    use std::cmp::Ordering::*;
    let arith = |f: fn(f64, f64) -> f64| -> Result<V, FormulaError> {
        Ok(V::Num(f(num(&a, lpos)?, num(&b, rpos)?)))
    };
    let cmp = |want: &dyn Fn(std::cmp::Ordering) -> bool| -> Result<V, FormulaError> {
        match compare(&a, &b) {
            Some(o) => Ok(V::Bool(want(o))),
            None => Err(FormulaError::eval(
                pos,
                "#VALUE!",
                format!(
                    "cannot compare with `{}` {} and {}",
                    op_text(op),
                    a.type_name(),
                    b.type_name()
                ),
            )),
        }
    };
    let result = match op {
        BinOp::Add => arith(|x, y| x + y)?,
        BinOp::Sub => arith(|x, y| x - y)?,
        BinOp::Mul => arith(|x, y| x * y)?,
        BinOp::Div => {
            let (x, y) = (num(&a, lpos)?, num(&b, rpos)?);
            if y == 0.0 {
                return Err(FormulaError::eval(pos, "#DIV/0!", "division by zero"));
            }
            V::Num(x / y)
        }
        BinOp::Pow => arith(f64::powf)?,
        BinOp::Concat => V::Text(text(&a, lpos)? + &text(&b, rpos)?),
        BinOp::Eq => cmp(&|o| o == Equal)?,
        BinOp::Ne => cmp(&|o| o != Equal)?,
        BinOp::Lt => cmp(&|o| o == Less)?,
        BinOp::Gt => cmp(&|o| o == Greater)?,
        BinOp::Le => cmp(&|o| o != Greater)?,
        BinOp::Ge => cmp(&|o| o != Less)?,
    };
    if let V::Num(n) = result {
        if !n.is_finite() {
            return Err(FormulaError::eval(
                pos,
                "#NUM!",
                format!("`{}` gives a number too large or undefined", op_text(op)),
            ));
        }
    }
    Ok(result)
}
