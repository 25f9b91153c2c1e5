//! `-o table|json|yaml`: one set of rows, three renderings.
use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// A JSON array of objects, for scripts.
    Json,
    /// The same as YAML.
    Yaml,
}

/// Renders `rows` (JSON objects) in `format`; `columns` picks and names the table columns
/// as (heading, key) pairs.
pub fn render(format: Format, columns: &[(&str, &str)], rows: &[Value]) -> String {
    match format {
        Format::Table => {
            let mut table = Table::new();
            table
                .load_preset(presets::NOTHING)
                .set_content_arrangement(ContentArrangement::Disabled)
                .set_header(columns.iter().map(|(heading, _)| *heading));
            for row in rows {
                table.add_row(columns.iter().map(|(_, key)| cell(&row[*key])));
            }
            let mut out = table
                .lines()
                .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_owned())
                .collect::<Vec<_>>()
                .join("\n");
            out.push('\n');
            out
        }
        Format::Json => {
            let mut out = serde_json::to_string_pretty(rows).unwrap_or_default();
            out.push('\n');
            out
        }
        Format::Yaml => {
            let mut out = String::new();
            yaml(&Value::Array(rows.to_vec()), 0, &mut out);
            out
        }
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A small YAML emitter: scalars are written as JSON scalars, which YAML reads as the same
/// values (double-quoted strings with JSON escapes are valid YAML).
fn yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Array(items) if items.is_empty() => out.push_str("[]\n"),
        Value::Object(map) if map.is_empty() => out.push_str("{}\n"),
        Value::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key goes on the dash's line.
                        let mut first = true;
                        for (k, v) in map {
                            if !first {
                                out.push_str(&pad);
                                out.push_str("  ");
                            }
                            first = false;
                            entry(k, v, indent + 2, out);
                        }
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.push('\n');
                        yaml(item, indent + 2, out);
                    }
                    scalar => {
                        yaml(scalar, 0, out);
                    }
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                out.push_str(&pad);
                entry(k, v, indent, out);
            }
        }
        scalar => {
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

fn entry(key: &str, value: &Value, indent: usize, out: &mut String) {
    let bare = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if bare {
        out.push_str(key);
    } else {
        out.push_str(&Value::String(key.to_owned()).to_string());
    }
    out.push(':');
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml(value, indent + 2, out);
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml(value, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            yaml(scalar, 0, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_of_rows_with_lists_and_quotes() {
        let rows = vec![
            json!({"file": "a \"b\".crt", "usages": ["ServerAuth", "ClientAuth"], "n": 3}),
            json!({"file": "c", "usages": [], "n": null}),
        ];
        let text = render(Format::Yaml, &[], &rows);
        assert_eq!(
            text,
            "- file: \"a \\\"b\\\".crt\"\n  n: 3\n  usages:\n    - \"ServerAuth\"\n    - \"ClientAuth\"\n- file: \"c\"\n  n: null\n  usages: []\n"
        );
    }

    #[test]
    fn table_has_headings_and_joined_lists() {
        let rows = vec![json!({"f": "x.crt", "u": ["A", "B"]})];
        let text = render(Format::Table, &[("FILENAME", "f"), ("USAGES", "u")], &rows);
        let lines: Vec<_> = text.lines().collect();
        assert!(lines[0].starts_with("FILENAME"), "{text}");
        assert!(
            lines[1].contains("x.crt") && lines[1].contains("A,B"),
            "{text}"
        );
    }
}
