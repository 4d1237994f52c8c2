//! Result tables: named columns, rows of cells; rendered as an aligned text table or as JSON
//! row objects keyed by column name.

use std::fmt::Write as _;

/// One cell of a result table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value (a metric undefined for this series, a segment column of another key).
    Null,
    /// A number; non-finite numbers are rendered as `null` in JSON.
    Number(f64),
    /// Text.
    Text(String),
}

impl Cell {
    /// The number, if this cell holds one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Number(v) => Some(*v),
            _ => None,
        }
    }

    /// The text, if this cell holds text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    /// `Number` for `Some(finite)`, `Null` otherwise.
    pub fn num(v: Option<f64>) -> Cell {
        match v {
            Some(x) if x.is_finite() => Cell::Number(x),
            _ => Cell::Null,
        }
    }

    /// A count.
    pub fn count(n: u64) -> Cell {
        Cell::Number(n as f64)
    }

    /// Text.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    fn render(&self) -> String {
        match self {
            Cell::Null => "-".to_string(),
            Cell::Text(s) => s.clone(),
            Cell::Number(v) => format_number(*v),
        }
    }
}

/// Numbers as a person reads them: integers without a fraction, others with 6 significant
/// digits (scientific notation for very small or large magnitudes).
pub fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if !(1e-4..1e9).contains(&a) {
        return format!("{v:.5e}");
    }
    let digits = 6 - (a.log10().floor() as i32 + 1);
    let s = format!("{v:.*}", digits.clamp(0, 10) as usize);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A result table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Table {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// A cell by row index and column name.
    pub fn get(&self, row: usize, column: &str) -> Option<&Cell> {
        self.rows.get(row)?.get(self.column(column)?)
    }

    /// An aligned text table: a header, a rule, one line per row; numbers right-aligned.
    pub fn render_text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Cell::render).collect())
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &cells {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .any(|r| matches!(r.get(i), Some(Cell::Number(_))))
                    && self
                        .rows
                        .iter()
                        .all(|r| !matches!(r.get(i), Some(Cell::Text(_))))
            })
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, vals: &[String]| {
            let mut first = true;
            for (i, v) in vals.iter().enumerate() {
                if !first {
                    out.push_str("  ");
                }
                first = false;
                let pad = widths[i].saturating_sub(v.chars().count());
                let last = i + 1 == vals.len();
                if numeric[i] {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(v);
                } else {
                    out.push_str(v);
                    if !last {
                        out.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push('\n');
        };
        line(&mut out, &self.columns);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut out, &rule);
        for r in &cells {
            line(&mut out, r);
        }
        let _ = write!(
            out,
            "({} row{})",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" }
        );
        out.push('\n');
        out
    }

    /// The rows as JSON objects keyed by column name (nulls included), in an array.
    pub fn to_json(&self) -> serde_json::Value {
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                for (c, v) in self.columns.iter().zip(r) {
                    let j = match v {
                        Cell::Null => serde_json::Value::Null,
                        Cell::Text(s) => serde_json::Value::String(s.clone()),
                        // Whole numbers (counts) print without a fraction.
                        Cell::Number(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => {
                            serde_json::Value::Number(serde_json::Number::from(*x as i64))
                        }
                        Cell::Number(x) => serde_json::Number::from_f64(*x)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                    };
                    m.insert(c.clone(), j);
                }
                serde_json::Value::Object(m)
            })
            .collect();
        serde_json::Value::Array(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.123456789), "0.123457");
        assert_eq!(format_number(123.456789), "123.457");
        assert_eq!(format_number(1e-7), "1.00000e-7");
        assert_eq!(format_number(0.5), "0.5");
    }

    #[test]
    fn text_table_aligns_and_json_keys_by_column() {
        let mut t = Table::new(["feature", "value"]);
        t.rows.push(vec![Cell::text("amount"), Cell::Number(0.25)]);
        t.rows.push(vec![Cell::text("age"), Cell::Null]);
        assert_eq!(
            t.render_text(),
            "feature  value\n-------  -----\namount    0.25\nage          -\n(2 rows)\n"
        );
        assert_eq!(
            t.to_json().to_string(),
            r#"[{"feature":"amount","value":0.25},{"feature":"age","value":null}]"#
        );
    }
}
