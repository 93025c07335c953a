//! Printing results: aligned tables for people, the API's JSON for scripts, and times.

use serde_json::Value as Json;

use super::Output;

/// A table of text cells under a header.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: columns padded to their widest cell, two spaces apart.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }
}

/// Prints `json` as JSON, or the table `table` builds from it.
pub fn show(output: Output, json: &Json, table: impl FnOnce(&Json) -> Table) {
    match output {
        Output::Json => println!("{json}"),
        Output::Table => println!("{}", table(json).render()),
    }
}

/// Prints a one-line outcome: `{"Result": ...}`-style JSON, or the sentence.
pub fn done(output: Output, json: Json, sentence: &str) {
    match output {
        Output::Json => println!("{json}"),
        Output::Table => println!("{sentence}"),
    }
}

/// A JSON value as a table cell: strings bare, null empty, the rest as JSON.
pub fn cell(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds since the epoch as UTC RFC 3339 (empty for unset values: 0 or negative).
pub fn time_ms(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Seconds since the epoch (the API's create times) as UTC RFC 3339.
pub fn time_s(v: &Json) -> String {
    v.as_i64().map(|s| time_ms(s * 1000)).unwrap_or_default()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
