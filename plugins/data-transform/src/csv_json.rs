//! `csv_to_json` and `json_to_csv`.

use leforge_forgehook_sdk::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Delimiters tried, in order of preference on a tie, when none is given.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];
/// Lines looked at to detect the delimiter.
const SNIFF_LINES: usize = 20;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvToJsonInput {
    /// The CSV text, with its header line first unless `header` is false.
    pub csv: String,
    /// The field separator: one character such as "," ";" "|" or "\t" ("tab" is accepted
    /// too). When absent it is detected among comma, semicolon, tab and pipe.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Whether the first line holds the column names. When false, columns are named
    /// column_1, column_2, ...
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    pub header: bool,
    /// Whether to turn numbers into JSON numbers, true/false into booleans and empty cells
    /// into null. Numbers with leading zeros (007, 01234) stay strings. When false every
    /// value is a string.
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    pub infer_types: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CsvToJsonOutput {
    /// One object per data row, keyed by column name, in file order.
    pub rows: Vec<Map<String, Value>>,
    /// The column names in file order (duplicates get a _2, _3 suffix).
    pub columns: Vec<String>,
    /// Number of data rows (the header is not counted).
    pub row_count: usize,
}

/// Converts CSV text to records.
pub fn csv_to_json(input: CsvToJsonInput) -> Result<CsvToJsonOutput, Error> {
    let text = input.csv.strip_prefix('\u{feff}').unwrap_or(&input.csv);
    let delimiter = match &input.delimiter {
        Some(d) => parse_delimiter(d)?,
        None => sniff_delimiter(text),
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        // Ragged rows are padded or reported below with a message naming the line.
        .flexible(true)
        .from_reader(text.as_bytes());

    let mut records = reader.records();
    let mut columns: Vec<String> = Vec::new();
    let mut first_data: Option<csv::StringRecord> = None;
    if input.header {
        match records.next() {
            Some(r) => columns = unique_names(&r.map_err(csv_error)?),
            None => {
                return Ok(CsvToJsonOutput {
                    rows: Vec::new(),
                    columns,
                    row_count: 0,
                })
            }
        }
    } else if let Some(r) = records.next() {
        let r = r.map_err(csv_error)?;
        columns = (1..=r.len()).map(|i| format!("column_{i}")).collect();
        first_data = Some(r);
    }

    let mut rows = Vec::new();
    let to_row = |record: &csv::StringRecord, columns: &mut Vec<String>| {
        if record.len() > columns.len() {
            if input.header {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                return Err(Error::invalid_input(format!(
                    "line {line} has {} fields but the header has {} columns",
                    record.len(),
                    columns.len()
                )));
            }
            for i in columns.len() + 1..=record.len() {
                columns.push(format!("column_{i}"));
            }
        }
        let mut row = Map::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            let value = match record.get(i) {
                Some(cell) if input.infer_types => infer(cell),
                Some(cell) => Value::String(cell.to_string()),
                None if input.infer_types => Value::Null,
                None => Value::String(String::new()),
            };
            row.insert(name.clone(), value);
        }
        Ok(row)
    };
    if let Some(r) = first_data {
        rows.push(to_row(&r, &mut columns)?);
    }
    for record in records {
        let record = record.map_err(csv_error)?;
        // A line holding only whitespace is a blank line, not a row of one empty cell.
        if record.len() == 1 && record[0].trim().is_empty() && columns.len() > 1 {
            continue;
        }
        rows.push(to_row(&record, &mut columns)?);
    }
    if !input.header {
        // Rows read before a longer one was seen lack the later columns.
        for row in &mut rows {
            for name in &columns {
                if !row.contains_key(name) {
                    let blank = if input.infer_types {
                        Value::Null
                    } else {
                        Value::String(String::new())
                    };
                    row.insert(name.clone(), blank);
                }
            }
        }
    }
    let row_count = rows.len();
    Ok(CsvToJsonOutput {
        rows,
        columns,
        row_count,
    })
}

fn csv_error(e: csv::Error) -> Error {
    let at = e
        .position()
        .map(|p| format!(" at line {}", p.line()))
        .unwrap_or_default();
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => Error::invalid_input(format!("the CSV is not UTF-8{at}")),
        _ => Error::invalid_input(format!("cannot parse the CSV{at}: {e}")),
    }
}

fn parse_delimiter(d: &str) -> Result<u8, Error> {
    let byte = match d {
        "tab" | "\\t" | "\t" => b'\t',
        _ if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
        _ => {
            return Err(Error::invalid_input(format!(
                "delimiter must be a single ASCII character such as \",\", \";\", \"|\" or \"\\t\", got {d:?}"
            )))
        }
    };
    if matches!(byte, b'"' | b'\r' | b'\n') {
        return Err(Error::invalid_input(format!(
            "delimiter cannot be {d:?}: it is part of the CSV syntax"
        )));
    }
    Ok(byte)
}

/// Picks the candidate that splits the first lines into the same number of fields most
/// consistently, preferring more fields, then the order of [`CANDIDATES`]. Quoted text is
/// skipped so that a comma inside "Smith, John" does not count.
fn sniff_delimiter(text: &str) -> u8 {
    // counts[line][candidate]
    let mut counts: Vec<[usize; 4]> = Vec::new();
    let mut current = [0usize; 4];
    let mut in_quotes = false;
    let mut line_has_content = false;
    for &b in text.as_bytes() {
        if b == b'"' {
            in_quotes = !in_quotes;
            line_has_content = true;
            continue;
        }
        if in_quotes {
            continue;
        }
        if b == b'\n' {
            if line_has_content {
                counts.push(current);
                if counts.len() >= SNIFF_LINES {
                    break;
                }
            }
            current = [0; 4];
            line_has_content = false;
            continue;
        }
        if b != b'\r' && !b.is_ascii_whitespace() {
            line_has_content = true;
        }
        if let Some(i) = CANDIDATES.iter().position(|&c| c == b) {
            current[i] += 1;
            line_has_content = true;
        }
    }
    if line_has_content && counts.len() < SNIFF_LINES {
        counts.push(current);
    }
    let Some(first) = counts.first() else {
        return b',';
    };
    let mut best: Option<(usize, usize, usize)> = None; // (consistent lines, fields, index)
    for i in 0..CANDIDATES.len() {
        if first[i] == 0 {
            continue;
        }
        let consistent = counts.iter().filter(|c| c[i] == first[i]).count();
        let better = match best {
            None => true,
            Some((bc, bf, _)) => consistent > bc || (consistent == bc && first[i] > bf),
        };
        if better {
            best = Some((consistent, first[i], i));
        }
    }
    best.map(|(_, _, i)| CANDIDATES[i]).unwrap_or(b',')
}

/// Header names, trimmed; blanks become column_N and repeats get _2, _3 so that no value is
/// lost to a key collision in the row objects.
fn unique_names(header: &csv::StringRecord) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let base = match raw.trim() {
            "" => format!("column_{}", i + 1),
            t => t.to_string(),
        };
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

/// The JSON value of one cell when types are inferred.
fn infer(cell: &str) -> Value {
    let t = cell.trim();
    if t.is_empty() {
        return Value::Null;
    }
    if t.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if is_json_number(t) {
        if !t.contains(['.', 'e', 'E']) {
            if let Ok(i) = t.parse::<i64>() {
                return Value::from(i);
            }
            // Too large for i64: a float would silently change the digits (an account
            // number, say), so it stays text.
            return Value::String(cell.to_string());
        }
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(cell.to_string())
}

/// JSON's number grammar, which rules out leading zeros ("007" is an id, not 7), a leading
/// '+', and forms like "1." or ".5".
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_len = i - int_start;
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonToCsvInput {
    /// The records to write, one CSV line each.
    pub rows: Vec<Map<String, Value>>,
    /// Column names in output order; keys not listed are left out. Default: every key, in
    /// order of first appearance across the rows.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The field separator, one character (default ","; "tab" is accepted for "\t").
    #[serde(default)]
    pub delimiter: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct JsonToCsvOutput {
    /// The CSV text: a header line, then one line per row, each ending in "\n".
    pub csv: String,
}

/// Converts records to CSV text.
pub fn json_to_csv(input: JsonToCsvInput) -> Result<JsonToCsvOutput, Error> {
    let delimiter = match &input.delimiter {
        Some(d) => parse_delimiter(d)?,
        None => b',',
    };
    let columns = match input.columns {
        Some(c) if c.is_empty() => {
            return Err(Error::invalid_input("columns must not be empty when given"))
        }
        Some(c) => c,
        None => {
            let mut seen = Vec::new();
            for row in &input.rows {
                for key in row.keys() {
                    if !seen.contains(key) {
                        seen.push(key.clone());
                    }
                }
            }
            seen
        }
    };
    if columns.is_empty() {
        return Ok(JsonToCsvOutput { csv: String::new() });
    }
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let internal = |e: csv::Error| Error::new(Error::INTERNAL, format!("writing CSV: {e}"));
    writer.write_record(&columns).map_err(internal)?;
    let mut cells: Vec<String> = Vec::with_capacity(columns.len());
    for row in &input.rows {
        cells.clear();
        for name in &columns {
            cells.push(match row.get(name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
        }
        writer.write_record(&cells).map_err(internal)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::new(Error::INTERNAL, format!("writing CSV: {e}")))?;
    let csv = String::from_utf8(bytes)
        .map_err(|e| Error::new(Error::INTERNAL, format!("writing CSV: {e}")))?;
    Ok(JsonToCsvOutput { csv })
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::json;

    const SEED: &str = "name,date,amount,region\nJohn,1/15/24,1500,West\nJane,2024-02-20,2000,East\nBob,March 5 2024,1200,West";

    #[test]
    fn seed_csv_becomes_typed_rows() {
        let out = call("csv_to_json", json!({"csv": SEED})).unwrap();
        assert_eq!(
            out,
            json!({
                "rows": [
                    {"name": "John", "date": "1/15/24", "amount": 1500, "region": "West"},
                    {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
                    {"name": "Bob", "date": "March 5 2024", "amount": 1200, "region": "West"}
                ],
                "columns": ["name", "date", "amount", "region"],
                "row_count": 3
            })
        );
    }

    #[test]
    fn quoting_crlf_bom_and_blank_trailing_lines() {
        let csv = "\u{feff}id,note,price\r\n\"007\",\"Smith, \"\"J\"\"\r\nline 2\",1.50\r\n008,plain,-2\r\n\r\n\r\n";
        let out = call("csv_to_json", json!({"csv": csv})).unwrap();
        assert_eq!(
            out["rows"],
            json!([
                {"id": "007", "note": "Smith, \"J\"\r\nline 2", "price": 1.5},
                {"id": "008", "note": "plain", "price": -2}
            ])
        );
        assert_eq!(out["columns"], json!(["id", "note", "price"]));
        assert_eq!(out["row_count"], 2);
    }

    #[test]
    fn types_are_inferred_only_when_asked() {
        let csv = "a,b,c,d,e,f,g\n0,TRUE,false,,1e3,+5,99999999999999999999";
        let out = call("csv_to_json", json!({"csv": csv})).unwrap();
        assert_eq!(
            out["rows"][0],
            json!({"a": 0, "b": true, "c": false, "d": null, "e": 1000.0, "f": "+5", "g": "99999999999999999999"})
        );
        let out = call("csv_to_json", json!({"csv": csv, "infer_types": false})).unwrap();
        assert_eq!(
            out["rows"][0],
            json!({"a": "0", "b": "TRUE", "c": "false", "d": "", "e": "1e3", "f": "+5", "g": "99999999999999999999"})
        );
    }

    #[test]
    fn delimiters_are_detected_or_taken_as_given() {
        for (sep, name) in [(";", ";"), ("\t", "tab"), ("|", "|")] {
            let csv = format!("a{sep}b\n\"x,y\"{sep}2\n3{sep}4\n");
            let out = call("csv_to_json", json!({"csv": csv})).unwrap();
            assert_eq!(
                out["rows"],
                json!([{"a": "x,y", "b": 2}, {"a": 3, "b": 4}]),
                "{name}"
            );
            let out = call("csv_to_json", json!({"csv": csv, "delimiter": name})).unwrap();
            assert_eq!(out["row_count"], 2, "{name}");
        }
        // Decimal commas inside a semicolon file do not fool the detection.
        let out = call("csv_to_json", json!({"csv": "a;b\n1,5;2,5\n3,0;4,0"})).unwrap();
        assert_eq!(out["columns"], json!(["a", "b"]));
        assert_eq!(out["rows"][0], json!({"a": "1,5", "b": "2,5"}));
    }

    #[test]
    fn headerless_and_ragged_rows() {
        let out = call(
            "csv_to_json",
            json!({"csv": "1,2\n3,4,5\n", "header": false}),
        )
        .unwrap();
        assert_eq!(out["columns"], json!(["column_1", "column_2", "column_3"]));
        assert_eq!(
            out["rows"],
            json!([
                {"column_1": 1, "column_2": 2, "column_3": null},
                {"column_1": 3, "column_2": 4, "column_3": 5}
            ])
        );
        // Short rows are padded; long rows cannot be named and are reported by line.
        let out = call("csv_to_json", json!({"csv": "a,b,a\n1"})).unwrap();
        assert_eq!(out["rows"], json!([{"a": 1, "b": null, "a_2": null}]));
        let (code, msg) = fail("csv_to_json", json!({"csv": "a,b\n1,2\n1,2,3"}));
        assert_eq!(code, "INVALID_INPUT");
        assert_eq!(msg, "line 3 has 3 fields but the header has 2 columns");
    }

    #[test]
    fn empty_input_gives_no_rows() {
        let out = call("csv_to_json", json!({"csv": ""})).unwrap();
        assert_eq!(out, json!({"rows": [], "columns": [], "row_count": 0}));
        let out = call("csv_to_json", json!({"csv": "a,b\n"})).unwrap();
        assert_eq!(
            out,
            json!({"rows": [], "columns": ["a", "b"], "row_count": 0})
        );
    }

    #[test]
    fn bad_csv_input_is_reported() {
        let (code, msg) = fail("csv_to_json", json!({"csv": "a", "delimiter": ",,"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(
            msg.starts_with("delimiter must be a single ASCII character"),
            "{msg}"
        );
        let (code, _) = fail("csv_to_json", json!({"csv": "a", "delimiter": "\""}));
        assert_eq!(code, "INVALID_INPUT");
        let (code, msg) = fail("csv_to_json", json!({"csv": 5}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("at `csv`: invalid type"), "{msg}");
        let (code, msg) = fail("csv_to_json", json!({"csv": "a", "delimeter": ";"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.contains("unknown field `delimeter`"), "{msg}");
        let (code, _) = fail("csv_to_json", json!({}));
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn json_to_csv_writes_a_header_and_quotes_when_needed() {
        let out = call(
            "json_to_csv",
            json!({"rows": [
                {"name": "Smith, J", "n": 1, "ok": true},
                {"name": "say \"hi\"", "extra": [1, 2], "n": null}
            ]}),
        )
        .unwrap();
        assert_eq!(
            out["csv"],
            "name,n,ok,extra\n\"Smith, J\",1,true,\n\"say \"\"hi\"\"\",,,\"[1,2]\"\n"
        );
        let out = call(
            "json_to_csv",
            json!({"rows": [{"a": 1, "b": 2}], "columns": ["b", "a"], "delimiter": ";"}),
        )
        .unwrap();
        assert_eq!(out["csv"], "b;a\n2;1\n");
        let out = call("json_to_csv", json!({"rows": []})).unwrap();
        assert_eq!(out["csv"], "");
    }

    #[test]
    fn json_to_csv_rejects_bad_input() {
        let (code, msg) = fail("json_to_csv", json!({"rows": [1, 2]}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("at `rows[0]`"), "{msg}");
        let (code, msg) = fail("json_to_csv", json!({"rows": [], "columns": []}));
        assert_eq!(code, "INVALID_INPUT");
        assert_eq!(msg, "columns must not be empty when given");
    }

    #[test]
    fn csv_round_trips_through_json() {
        let csv = "a,b\n\"x,1\",2\n";
        let rows = call("csv_to_json", json!({"csv": csv})).unwrap();
        let back = call("json_to_csv", json!({"rows": rows["rows"]})).unwrap();
        assert_eq!(back["csv"], csv);
    }
}
