//! `aggregate`: group records by a field and reduce another field per group.

use std::collections::BTreeMap;

use leforge_forgehook_sdk::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Decimal places beyond which sums are not rounded back (inputs that precise are rare and
/// rounding them would lose data).
const MAX_DECIMALS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Sum,
    Avg,
    Count,
    Min,
    Max,
}

/// The records to group: JSON objects, or a CSV table as text.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Records {
    /// CSV text whose first line names the columns. Accepted directly so that a table in
    /// the data is totalled in one call, without a csv_to_json step in between. First, so
    /// that tool listings show `string|array of object`.
    Csv(String),
    Rows(Vec<Map<String, Value>>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateInput {
    /// The records: JSON objects (e.g. the rows from csv_to_json), or CSV text with a
    /// header line.
    pub records: Records,
    /// The field whose value names each record's group, e.g. "region". Records where it
    /// is missing or null are grouped under "null".
    pub group_by: String,
    /// The field to aggregate, e.g. "amount". Numbers and numeric text such as "1,500",
    /// "$1,200.50", "(300)" or "-4.5" count; missing, null and blank values are skipped.
    pub field: String,
    /// sum, avg (mean), count (non-blank values of `field`), min or max.
    pub op: Op,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AggregateOutput {
    /// One entry per group value, in order of first appearance. Null for avg/min/max of a
    /// group without values.
    #[schemars(with = "BTreeMap<String, Option<f64>>")]
    pub groups: Map<String, Value>,
    /// The same operation over all records.
    #[schemars(with = "Option<f64>")]
    pub total: Value,
}

/// Running state of one group.
#[derive(Default)]
struct Acc {
    sum: f64,
    count: usize,
    min: Option<f64>,
    max: Option<f64>,
    /// Most decimal places seen, `None` once a value had an exponent or too many.
    decimals: Option<u32>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            decimals: Some(0),
            ..Acc::default()
        }
    }

    fn add(&mut self, x: f64, decimals: Option<u32>) {
        self.sum += x;
        self.count += 1;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        self.decimals = match (self.decimals, decimals) {
            (Some(a), Some(b)) if b <= MAX_DECIMALS => Some(a.max(b)),
            _ => None,
        };
    }

    fn result(&self, op: Op) -> Value {
        let x = match op {
            // Binary floating point makes 0.1 + 0.2 = 0.30000000000000004; the inputs' own
            // precision says what the sum really is.
            Op::Sum => Some(match self.decimals {
                Some(d) => {
                    let f = 10f64.powi(d as i32);
                    (self.sum * f).round() / f
                }
                None => self.sum,
            }),
            Op::Count => Some(self.count as f64),
            Op::Avg if self.count > 0 => Some(self.sum / self.count as f64),
            Op::Avg => None,
            Op::Min => self.min,
            Op::Max => self.max,
        };
        x.and_then(crate::json_number)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A number from a JSON value and its decimal places; `Ok(None)` for blanks.
fn number(v: &Value) -> Result<Option<(f64, Option<u32>)>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let x = n.as_f64().ok_or(())?;
            Ok(Some((x, decimals(&n.to_string()))))
        }
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => numeric_text(s).map(Some).ok_or(()),
        _ => Err(()),
    }
}

fn decimals(s: &str) -> Option<u32> {
    if s.contains(['e', 'E']) {
        return None;
    }
    Some(s.split_once('.').map_or(0, |(_, f)| f.len() as u32))
}

/// `1500`, `1,500`, `$1,200.50`, `-€3.5`, `$-3`, `(300)` (accounting negative), `12 USD` is
/// not accepted: only symbols, because a currency code can be anything.
fn numeric_text(s: &str) -> Option<(f64, Option<u32>)> {
    let mut t = s.trim();
    let mut negative = false;
    if let Some(inner) = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        negative = true;
        t = inner.trim();
    }
    let symbols: &[char] = &['$', '€', '£', '¥', '₹'];
    let strip_sign = |t: &str, negative: &mut bool| -> String {
        if let Some(r) = t.strip_prefix('-') {
            *negative = !*negative;
            r.trim_start().to_string()
        } else {
            t.strip_prefix('+').unwrap_or(t).trim_start().to_string()
        }
    };
    let mut body = strip_sign(t, &mut negative);
    body = body
        .trim_start_matches(symbols)
        .trim_end_matches(symbols)
        .trim()
        .to_string();
    if body.starts_with(['-', '+']) {
        body = strip_sign(&body, &mut negative);
    }
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body.as_str(), None),
    };
    let digits_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    // Thousands separators only where they belong: 1,500 and 12,345,678, not 1,5.
    let int_digits: String = if int.contains(',') {
        let groups: Vec<&str> = int.split(',').collect();
        let first_ok = (1..=3).contains(&groups[0].len()) && digits_ok(groups[0]);
        let rest_ok = groups[1..].iter().all(|g| g.len() == 3 && digits_ok(g));
        if !(first_ok && rest_ok) {
            return None;
        }
        groups.concat()
    } else {
        int.to_string()
    };
    if !(digits_ok(&int_digits) || (int_digits.is_empty() && frac.is_some())) {
        return None;
    }
    if frac.is_some_and(|f| !digits_ok(f)) {
        return None;
    }
    let text = match frac {
        Some(f) => format!("{int_digits}.{f}"),
        None => int_digits,
    };
    let x: f64 = text.parse().ok()?;
    Some((
        if negative { -x } else { x },
        Some(frac.map_or(0, |f| f.len() as u32)),
    ))
}

fn group_key(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The rows of a CSV table with a header line, every cell as text (numeric text counts as a
/// number when aggregated). The delimiter is the first of `,` `;` tab found in the header.
fn csv_rows(text: &str) -> Result<Vec<Map<String, Value>>, Error> {
    // Spreadsheet exports often start with a byte-order mark, which would end up in the
    // first column's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header = text.lines().next().unwrap_or_default();
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| header.bytes().filter(|b| b == d).count())
        .filter(|d| header.as_bytes().contains(d))
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| Error::invalid_input(format!("records: not a CSV table: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    if let Some(dup) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| columns[..*i].contains(c))
    {
        return Err(Error::invalid_input(format!(
            "records: the CSV header names column '{}' twice",
            dup.1
        )));
    }
    let mut rows = Vec::new();
    // Rows with another number of cells than the header are an error (the csv reader is
    // not flexible), rather than rows that silently lose columns.
    for (i, record) in reader.records().enumerate() {
        let record =
            record.map_err(|e| Error::invalid_input(format!("records: CSV row {}: {e}", i + 1)))?;
        let row: Map<String, Value> = columns
            .iter()
            .zip(record.iter())
            .map(|(c, v)| (c.clone(), Value::String(v.to_string())))
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

pub fn aggregate(input: AggregateInput) -> Result<AggregateOutput, Error> {
    if input.group_by.is_empty() || input.field.is_empty() {
        return Err(Error::invalid_input(
            "`group_by` and `field` must name fields",
        ));
    }
    let mut groups: Vec<(String, Acc)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut total = Acc::new();
    let records = match input.records {
        Records::Rows(rows) => rows,
        Records::Csv(text) => csv_rows(&text)?,
    };
    for (i, record) in records.iter().enumerate() {
        let key = group_key(record.get(&input.group_by));
        let slot = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Acc::new()));
            groups.len() - 1
        });
        let Some(value) = record.get(&input.field) else {
            continue;
        };
        let parsed = if input.op == Op::Count {
            match value {
                Value::Null => None,
                Value::String(s) if s.trim().is_empty() => None,
                _ => Some((0.0, Some(0))),
            }
        } else {
            number(value).map_err(|()| {
                Error::invalid_input(format!(
                    "records[{i}].{}: {value} is not a number (numbers and numeric text such as \
                     \"1,500\" or \"$1,200.50\" are accepted)",
                    input.field
                ))
            })?
        };
        if let Some((x, d)) = parsed {
            groups[slot].1.add(x, d);
            total.add(x, d);
        }
    }
    let mut out = Map::new();
    for (key, acc) in &groups {
        out.insert(key.clone(), acc.result(input.op));
    }
    Ok(AggregateOutput {
        groups: out,
        total: total.result(input.op),
    })
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::json;

    fn seed() -> serde_json::Value {
        json!([
            {"name": "John", "date": "2024-01-15", "amount": 1500, "region": "West"},
            {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
            {"name": "Bob", "date": "2024-03-05", "amount": 1200, "region": "West"}
        ])
    }

    fn agg(op: &str) -> serde_json::Value {
        call(
            "aggregate",
            json!({"records": seed(), "group_by": "region", "field": "amount", "op": op}),
        )
        .unwrap()
    }

    #[test]
    fn seed_sum_per_region_is_integral() {
        let out = agg("sum");
        assert_eq!(
            out,
            json!({"groups": {"West": 2700, "East": 2000}, "total": 4700})
        );
        // Integers, not 2700.0: the exact JSON text matters to the callers.
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"groups":{"West":2700,"East":2000},"total":4700}"#
        );
    }

    #[test]
    fn csv_text_is_aggregated_directly() {
        let csv =
            "name,date,amount,region\nJohn,1/15/24,\"1,500\",West\nJane,2024-02-20,2000,East\n\
                   Bob,March 5 2024,1200,West\nAmy,2024-04-01,800.50,North\n";
        let out = call(
            "aggregate",
            json!({"records": csv, "group_by": "region", "field": "amount", "op": "sum"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"groups": {"West": 2700, "East": 2000, "North": 800.5}, "total": 5500.5})
        );
        let semicolons = "region;amount\nWest;1\nWest;2\n";
        let out = call(
            "aggregate",
            json!({"records": semicolons, "group_by": "region", "field": "amount", "op": "count"}),
        )
        .unwrap();
        assert_eq!(out["groups"], json!({"West": 2}));
        let (code, message) = fail(
            "aggregate",
            json!({"records": "region,amount\nWest,lots\n", "group_by": "region", "field": "amount", "op": "sum"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(message.contains("records[0].amount"), "{message}");
        // A byte-order mark is not part of the first column's name.
        let out = call(
            "aggregate",
            json!({"records": "\u{feff}region,amount\nWest,1\n", "group_by": "region", "field": "amount", "op": "sum"}),
        )
        .unwrap();
        assert_eq!(out["groups"], json!({"West": 1}));
        for (csv, says) in [
            ("region,amount\nWest,1,extra\n", "CSV row 1"),
            ("region,region\nWest,East\n", "'region' twice"),
        ] {
            let (code, message) = fail(
                "aggregate",
                json!({"records": csv, "group_by": "region", "field": "amount", "op": "sum"}),
            );
            assert_eq!(code, "INVALID_INPUT");
            assert!(message.contains(says), "{message}");
        }
    }

    #[test]
    fn every_op() {
        assert_eq!(
            agg("avg"),
            json!({"groups": {"West": 1350, "East": 2000}, "total": 1566.6666666666667})
        );
        assert_eq!(
            agg("count"),
            json!({"groups": {"West": 2, "East": 1}, "total": 3})
        );
        assert_eq!(
            agg("min"),
            json!({"groups": {"West": 1200, "East": 2000}, "total": 1200})
        );
        assert_eq!(
            agg("max"),
            json!({"groups": {"West": 1500, "East": 2000}, "total": 2000})
        );
    }

    #[test]
    fn numeric_text_and_blanks() {
        let records = json!([
            {"g": "a", "v": "1,500"},
            {"g": "a", "v": "$1,200.50"},
            {"g": "b", "v": "(300)"},
            {"g": "b", "v": "-€0.10"},
            {"g": "b", "v": 0.2},
            {"g": "c", "v": ""},
            {"g": "c"},
            {"v": 1}
        ]);
        let out = call(
            "aggregate",
            json!({"records": records, "group_by": "g", "field": "v", "op": "sum"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"groups": {"a": 2700.5, "b": -299.9, "c": 0, "null": 1}, "total": 2401.6})
        );
        let out = call(
            "aggregate",
            json!({"records": records, "group_by": "g", "field": "v", "op": "max"}),
        )
        .unwrap();
        assert_eq!(out["groups"]["c"], json!(null));
        let out = call(
            "aggregate",
            json!({"records": records, "group_by": "g", "field": "v", "op": "count"}),
        )
        .unwrap();
        assert_eq!(out["groups"], json!({"a": 2, "b": 3, "c": 0, "null": 1}));
        let out = call(
            "aggregate",
            json!({"records": [], "group_by": "g", "field": "v", "op": "avg"}),
        )
        .unwrap();
        assert_eq!(out, json!({"groups": {}, "total": null}));
    }

    #[test]
    fn bad_values_and_input_are_reported() {
        let (code, msg) = fail(
            "aggregate",
            json!({"records": [{"g": 1, "v": 1}, {"g": 1, "v": "1,5"}], "group_by": "g", "field": "v", "op": "sum"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(
            msg.starts_with("records[1].v: \"1,5\" is not a number"),
            "{msg}"
        );
        let (code, msg) = fail(
            "aggregate",
            json!({"records": [], "group_by": "g", "field": "v", "op": "median"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(
            msg.starts_with("at `op`: unknown variant `median`"),
            "{msg}"
        );
        let (code, _) = fail(
            "aggregate",
            json!({"records": [], "group_by": "", "field": "v", "op": "sum"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        let (code, _) = fail(
            "aggregate",
            json!({"records": {}, "group_by": "g", "field": "v", "op": "sum"}),
        );
        assert_eq!(code, "INVALID_INPUT");
    }
}
