//! Text forms used in file names, tables and messages.

/// Formats a number without a trailing `.0` (10 → "10", 0.5 → "0.5").
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A name made safe for file names: letters, digits, `-` and `.` kept, anything else `_`.
pub fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
