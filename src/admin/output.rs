//! What the admin commands print: aligned tables, bounded one-line cells, ages and JSON.

use serde_json::Value;

/// Characters of a reason or payload shown in a table cell.
pub(super) const CELL_WIDTH: usize = 60;

pub(super) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a json value always serializes")
    );
}

/// Text for one table cell: control characters shown as escapes, cut to `max` characters
/// with an ellipsis.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let shown: Vec<char> = text
        .chars()
        .flat_map(|c| -> Vec<char> {
            match c {
                '\n' => vec!['\\', 'n'],
                '\r' => vec!['\\', 'r'],
                '\t' => vec!['\\', 't'],
                c if c.is_control() => c.escape_unicode().collect(),
                c => vec![c],
            }
        })
        .take(max + 1)
        .collect();
    if shown.len() <= max {
        return shown.into_iter().collect();
    }
    let mut cut: String = shown[..max.saturating_sub(1)].iter().collect();
    cut.push('…');
    cut
}

/// A duration for a table cell, in its two largest units: `0s`, `59s`, `1m05s`, `2h00m`,
/// `3d04h`.
pub(super) fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// An aligned table: columns separated by two spaces, `right[i]` aligns column `i` right.
pub(super) fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["access".to_string(), "web".to_string(), "3".to_string()],
            vec!["e".to_string(), "".to_string(), "12345".to_string()],
        ];
        assert_eq!(
            table(&["NAME", "DESCRIPTION", "N"], &[false, false, true], &rows),
            "NAME    DESCRIPTION      N\n\
             access  web              3\n\
             e                    12345\n"
        );
        assert_eq!(table(&["A", "B"], &[false, false], &[]), "A  B\n");
    }

    #[test]
    fn ages_show_two_units() {
        for (seconds, expected) in [
            (0, "0s"),
            (59, "59s"),
            (65, "1m05s"),
            (3_599, "59m59s"),
            (7_200, "2h00m"),
            (86_399, "23h59m"),
            (273_600, "3d04h"),
        ] {
            assert_eq!(age(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn cells_are_one_bounded_line() {
        let table = [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("eleven chars", 10, "eleven ch…"),
            ("a\nb\tc", 10, "a\\nb\\tc"),
            ("ab\ncd", 3, "ab…"),
            ("héllo wörld", 5, "héll…"),
            ("\u{1}", 20, "\\u{1}"),
        ];
        for (text, max, expected) in table {
            assert_eq!(one_line(text, max), expected, "{text:?}");
            assert!(one_line(text, max).chars().count() <= max);
        }
    }
}
