//! The built-in spreadsheet functions.

use std::cmp::Ordering;

use crate::eval::{compare, format_number, num, parse_number, text, truthy, Env, V};
use crate::parser::Expr;
use crate::FormulaError;

/// Names listed in errors and in the endpoint description.
pub const NAMES: &[&str] = &[
    "SUM",
    "AVERAGE",
    "MIN",
    "MAX",
    "COUNT",
    "COUNTA",
    "COUNTIF",
    "SUMIF",
    "IF",
    "IFERROR",
    "AND",
    "OR",
    "NOT",
    "ROUND",
    "ROUNDUP",
    "ROUNDDOWN",
    "INT",
    "ABS",
    "MOD",
    "POWER",
    "SQRT",
    "CONCAT",
    "CONCATENATE",
    "LEN",
    "UPPER",
    "LOWER",
    "TRIM",
    "LEFT",
    "RIGHT",
    "MID",
    "VLOOKUP",
];

fn arity(
    name: &str,
    args: &[Expr],
    min: usize,
    max: usize,
    pos: usize,
) -> Result<(), FormulaError> {
    if args.len() < min || args.len() > max {
        let want = match (min, max) {
            (a, b) if a == b => format!("{a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(FormulaError::name(
            pos,
            format!("{name} takes {want} argument(s), got {}", args.len()),
        ));
    }
    Ok(())
}

/// Numbers for SUM and friends: direct arguments are coerced (text "3" counts), while
/// inside arrays only numbers count, as Excel treats ranges.
fn numbers(env: &Env, args: &[Expr]) -> Result<Vec<f64>, FormulaError> {
    fn collect(v: &V, out: &mut Vec<f64>) {
        match v {
            V::Num(n) => out.push(*n),
            V::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for a in args {
        match env.eval(a)? {
            V::Array(items) => items.iter().for_each(|i| collect(i, &mut out)),
            V::Empty => {}
            v => out.push(num(&v, a.pos)?),
        }
    }
    Ok(out)
}

fn flatten(v: V, out: &mut Vec<V>) {
    match v {
        V::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn flat(env: &Env, args: &[Expr]) -> Result<Vec<V>, FormulaError> {
    let mut out = Vec::new();
    for a in args {
        flatten(env.eval(a)?, &mut out);
    }
    Ok(out)
}

fn round_to(x: f64, digits: f64, mode: fn(f64) -> f64) -> f64 {
    let digits = digits.trunc().clamp(-15.0, 15.0);
    let factor = 10f64.powi(digits as i32);
    // Scaling by the tidy value avoids 2.675 rounding to 2.67 because of its binary form.
    let scaled = crate::eval::tidy(x * factor);
    mode(scaled) / factor
}

/// Half away from zero, as Excel's ROUND.
fn half_away(x: f64) -> f64 {
    x.round()
}

fn away(x: f64) -> f64 {
    if x >= 0.0 {
        x.ceil()
    } else {
        x.floor()
    }
}

/// A COUNTIF/SUMIF criterion: `5`, `">10"`, `"<>x"`, `"app*"`.
struct Criterion {
    op: &'static str,
    value: V,
}

impl Criterion {
    fn new(v: V) -> Criterion {
        let V::Text(s) = &v else {
            return Criterion { op: "=", value: v };
        };
        let (op, rest) = [">=", "<=", "<>", ">", "<", "="]
            .iter()
            .find_map(|op| s.strip_prefix(op).map(|r| (*op, r)))
            .unwrap_or(("=", s.as_str()));
        let value = match parse_number(rest) {
            Some(n) => V::Num(n),
            None if rest.eq_ignore_ascii_case("true") => V::Bool(true),
            None if rest.eq_ignore_ascii_case("false") => V::Bool(false),
            None => V::Text(rest.to_string()),
        };
        Criterion { op, value }
    }

    fn matches(&self, cell: &V) -> bool {
        // A number criterion matches numbers and numeric text alike.
        let cell = match (cell, &self.value) {
            (V::Text(t), V::Num(_)) => match parse_number(t) {
                Some(n) => V::Num(n),
                None => return self.op == "<>",
            },
            _ => cell.clone(),
        };
        if let (V::Text(pattern), "=" | "<>") = (&self.value, self.op) {
            let hit = match &cell {
                V::Text(t) => wildcard(&pattern.to_lowercase(), &t.to_lowercase()),
                V::Empty => pattern.is_empty(),
                _ => false,
            };
            return hit == (self.op == "=");
        }
        let same_kind = matches!(
            (&cell, &self.value),
            (V::Num(_), V::Num(_)) | (V::Text(_), V::Text(_)) | (V::Bool(_), V::Bool(_))
        );
        if !same_kind {
            return self.op == "<>";
        }
        match compare(&cell, &self.value) {
            Some(o) => match self.op {
                "=" => o == Ordering::Equal,
                "<>" => o != Ordering::Equal,
                ">" => o == Ordering::Greater,
                "<" => o == Ordering::Less,
                ">=" => o != Ordering::Less,
                _ => o != Ordering::Greater,
            },
            None => false,
        }
    }
}

/// `*` any run, `?` one character, `~` escapes the next.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*`; linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '~' && pi + 1 < p.len() && p[pi + 1] == t[ti] {
            pi += 2;
            ti += 1;
        } else if pi < p.len() && (p[pi] == '?' || (p[pi] == t[ti] && p[pi] != '*' && p[pi] != '~'))
        {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn cells(v: V) -> Vec<V> {
    let mut out = Vec::new();
    flatten(v, &mut out);
    out
}

pub fn call(env: &Env, name: &str, args: &[Expr], pos: usize) -> Result<V, FormulaError> {
    let n = |i: usize| -> Result<f64, FormulaError> { num(&env.eval(&args[i])?, args[i].pos) };
    let t = |i: usize| -> Result<String, FormulaError> { text(&env.eval(&args[i])?, args[i].pos) };
    let count_arg = |i: usize, default: f64| -> Result<usize, FormulaError> {
        let c = if args.len() > i { n(i)? } else { default };
        if c < 0.0 {
            return Err(FormulaError::eval(
                args[i].pos,
                "#VALUE!",
                "a character count cannot be negative",
            ));
        }
        Ok(c.trunc() as usize)
    };
    Ok(match name {
        "SUM" => {
            arity(name, args, 1, usize::MAX, pos)?;
            V::Num(numbers(env, args)?.iter().sum())
        }
        "AVERAGE" => {
            arity(name, args, 1, usize::MAX, pos)?;
            let xs = numbers(env, args)?;
            if xs.is_empty() {
                return Err(FormulaError::eval(pos, "#DIV/0!", "AVERAGE of no numbers"));
            }
            V::Num(xs.iter().sum::<f64>() / xs.len() as f64)
        }
        "MIN" | "MAX" => {
            arity(name, args, 1, usize::MAX, pos)?;
            let xs = numbers(env, args)?;
            let pick = if name == "MIN" { f64::min } else { f64::max };
            // Excel gives 0 when there are no numbers.
            V::Num(xs.into_iter().reduce(pick).unwrap_or(0.0))
        }
        "COUNT" => {
            arity(name, args, 1, usize::MAX, pos)?;
            let mut count = 0;
            for a in args {
                match env.eval(a)? {
                    V::Array(items) => {
                        count += cells(V::Array(items))
                            .iter()
                            .filter(|v| matches!(v, V::Num(_)))
                            .count()
                    }
                    V::Num(_) => count += 1,
                    V::Text(s) if parse_number(&s).is_some() => count += 1,
                    _ => {}
                }
            }
            V::Num(count as f64)
        }
        "COUNTA" => {
            arity(name, args, 1, usize::MAX, pos)?;
            V::Num(
                flat(env, args)?
                    .iter()
                    .filter(|v| !matches!(v, V::Empty))
                    .count() as f64,
            )
        }
        "COUNTIF" => {
            arity(name, args, 2, 2, pos)?;
            let range = cells(env.eval(&args[0])?);
            let crit = Criterion::new(env.eval(&args[1])?);
            V::Num(range.iter().filter(|c| crit.matches(c)).count() as f64)
        }
        "SUMIF" => {
            arity(name, args, 2, 3, pos)?;
            let range = cells(env.eval(&args[0])?);
            let crit = Criterion::new(env.eval(&args[1])?);
            let sum_range = match args.get(2) {
                Some(a) => cells(env.eval(a)?),
                None => range.clone(),
            };
            if sum_range.len() != range.len() {
                return Err(FormulaError::eval(
                    pos,
                    "#VALUE!",
                    format!(
                        "SUMIF's range has {} cells but its sum_range has {}",
                        range.len(),
                        sum_range.len()
                    ),
                ));
            }
            let mut total = 0.0;
            for (cell, add) in range.iter().zip(&sum_range) {
                if crit.matches(cell) {
                    if let V::Num(x) = add {
                        total += x;
                    }
                }
            }
            V::Num(total)
        }
        "IF" => {
            arity(name, args, 2, 3, pos)?;
            // Only the branch taken is evaluated, so IF(b = 0, 0, a / b) is safe.
            if truthy(&env.eval(&args[0])?, args[0].pos)? {
                env.eval(&args[1])?
            } else if let Some(e) = args.get(2) {
                env.eval(e)?
            } else {
                V::Bool(false)
            }
        }
        "IFERROR" => {
            arity(name, args, 2, 2, pos)?;
            match env.eval(&args[0]) {
                Ok(v) => v,
                Err(e) if e.is_evaluation() => env.eval(&args[1])?,
                Err(e) => return Err(e),
            }
        }
        "AND" | "OR" => {
            arity(name, args, 1, usize::MAX, pos)?;
            let mut acc = name == "AND";
            for a in args {
                for v in cells(env.eval(a)?) {
                    let b = truthy(&v, a.pos)?;
                    acc = if name == "AND" { acc && b } else { acc || b };
                }
            }
            V::Bool(acc)
        }
        "NOT" => {
            arity(name, args, 1, 1, pos)?;
            V::Bool(!truthy(&env.eval(&args[0])?, args[0].pos)?)
        }
        "ROUND" | "ROUNDUP" | "ROUNDDOWN" => {
            arity(name, args, 1, 2, pos)?;
            let digits = if args.len() > 1 { n(1)? } else { 0.0 };
            let mode: fn(f64) -> f64 = match name {
                "ROUND" => half_away,
                "ROUNDUP" => away,
                _ => f64::trunc,
            };
            V::Num(round_to(n(0)?, digits, mode))
        }
        "INT" => {
            arity(name, args, 1, 1, pos)?;
            V::Num(n(0)?.floor())
        }
        "ABS" => {
            arity(name, args, 1, 1, pos)?;
            V::Num(n(0)?.abs())
        }
        "MOD" => {
            arity(name, args, 2, 2, pos)?;
            let (a, b) = (n(0)?, n(1)?);
            if b == 0.0 {
                return Err(FormulaError::eval(pos, "#DIV/0!", "MOD by zero"));
            }
            // The result takes the divisor's sign, as in Excel.
            V::Num(a - b * (a / b).floor())
        }
        "POWER" => {
            arity(name, args, 2, 2, pos)?;
            let r = n(0)?.powf(n(1)?);
            if !r.is_finite() {
                return Err(FormulaError::eval(
                    pos,
                    "#NUM!",
                    "POWER gives a number too large or undefined",
                ));
            }
            V::Num(r)
        }
        "SQRT" => {
            arity(name, args, 1, 1, pos)?;
            let x = n(0)?;
            if x < 0.0 {
                return Err(FormulaError::eval(
                    pos,
                    "#NUM!",
                    "SQRT of a negative number",
                ));
            }
            V::Num(x.sqrt())
        }
        "CONCAT" | "CONCATENATE" => {
            arity(name, args, 1, usize::MAX, pos)?;
            let mut s = String::new();
            for v in flat(env, args)? {
                s.push_str(&text(&v, pos)?);
            }
            V::Text(s)
        }
        "LEN" => {
            arity(name, args, 1, 1, pos)?;
            V::Num(t(0)?.chars().count() as f64)
        }
        "UPPER" => {
            arity(name, args, 1, 1, pos)?;
            V::Text(t(0)?.to_uppercase())
        }
        "LOWER" => {
            arity(name, args, 1, 1, pos)?;
            V::Text(t(0)?.to_lowercase())
        }
        "TRIM" => {
            arity(name, args, 1, 1, pos)?;
            // Excel's TRIM also collapses runs of inner spaces to one.
            V::Text(t(0)?.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        "LEFT" | "RIGHT" => {
            arity(name, args, 1, 2, pos)?;
            let s: Vec<char> = t(0)?.chars().collect();
            let k = count_arg(1, 1.0)?.min(s.len());
            V::Text(if name == "LEFT" {
                s[..k].iter().collect()
            } else {
                s[s.len() - k..].iter().collect()
            })
        }
        "MID" => {
            arity(name, args, 3, 3, pos)?;
            let s: Vec<char> = t(0)?.chars().collect();
            let start = n(1)?;
            if start < 1.0 {
                return Err(FormulaError::eval(
                    args[1].pos,
                    "#VALUE!",
                    "MID's start must be at least 1",
                ));
            }
            let start = (start.trunc() as usize - 1).min(s.len());
            let k = count_arg(2, 0.0)?.min(s.len() - start);
            V::Text(s[start..start + k].iter().collect())
        }
        "VLOOKUP" => {
            arity(name, args, 3, 4, pos)?;
            vlookup(env, args, pos)?
        }
        _ => {
            return Err(FormulaError::name(
                pos,
                format!("unknown function {name}; available: {}", NAMES.join(", ")),
            ))
        }
    })
}

/// VLOOKUP(value, table, column, [approximate = TRUE]) over a table given as an array of
/// rows. Approximate match (Excel's default) expects the first column sorted ascending and
/// takes the last row whose key is not greater than `value`.
fn vlookup(env: &Env, args: &[Expr], pos: usize) -> Result<V, FormulaError> {
    let key = env.eval(&args[0])?;
    let table = match env.eval(&args[1])? {
        V::Array(rows) => rows,
        other => {
            return Err(FormulaError::eval(
                args[1].pos,
                "#VALUE!",
                format!(
                    "VLOOKUP's table must be an array of rows, got {}",
                    type_of(&other)
                ),
            ))
        }
    };
    let col = num(&env.eval(&args[2])?, args[2].pos)?.trunc();
    if col < 1.0 {
        return Err(FormulaError::eval(
            args[2].pos,
            "#VALUE!",
            "VLOOKUP's column must be at least 1",
        ));
    }
    let col = col as usize;
    let approximate = match args.get(3) {
        Some(a) => truthy(&env.eval(a)?, a.pos)?,
        None => true,
    };
    let mut found: Option<&Vec<V>> = None;
    for row in &table {
        let V::Array(cells) = row else {
            return Err(FormulaError::eval(
                args[1].pos,
                "#VALUE!",
                "VLOOKUP's table must be an array of rows (arrays), e.g. {1, \"a\"; 2, \"b\"}",
            ));
        };
        let Some(first) = cells.first() else { continue };
        let ord = compare(first, &key);
        if approximate {
            let comparable = std::mem::discriminant(first) == std::mem::discriminant(&key);
            match ord {
                Some(Ordering::Greater) if comparable => break,
                Some(_) if comparable => found = Some(cells),
                _ => {}
            }
        } else if ord == Some(Ordering::Equal)
            && std::mem::discriminant(first) == std::mem::discriminant(&key)
        {
            found = Some(cells);
            break;
        }
    }
    let Some(row) = found else {
        return Err(FormulaError::eval(
            pos,
            "#N/A",
            format!("VLOOKUP found no row for {}", describe(&key)),
        ));
    };
    row.get(col - 1).cloned().ok_or_else(|| {
        FormulaError::eval(
            args[2].pos,
            "#REF!",
            format!(
                "VLOOKUP's column {col} is past the row's {} columns",
                row.len()
            ),
        )
    })
}

fn type_of(v: &V) -> &'static str {
    match v {
        V::Num(_) => "a number",
        V::Text(_) => "text",
        V::Bool(_) => "a boolean",
        V::Empty => "blank",
        V::Array(_) => "an array",
    }
}

fn describe(v: &V) -> String {
    match v {
        V::Text(s) => format!("{s:?}"),
        V::Num(n) => format_number(*n),
        V::Bool(b) => b.to_string().to_uppercase(),
        V::Empty => "blank".into(),
        V::Array(_) => "an array".into(),
    }
}
