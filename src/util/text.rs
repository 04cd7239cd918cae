//! Text forms used in file names, tables and messages.

/// Formats a number without a trailing `.0` (10 → "10", 0.5 → "0.5").
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A name made safe for file names: letters, digits, `-` and `.` kept, anything else `_`. A
/// name longer than [`FILE_SAFE_MAX`] keeps its first characters and ends in 8 hex digits of the
/// SHA-256 of the whole label, so that long labels (a method with many swept settings) still make
/// distinct files that file systems accept (they refuse names over 255 bytes).
pub fn file_safe(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.len() <= FILE_SAFE_MAX {
        return safe;
    }
    format!("{}-{}", &safe[..FILE_SAFE_MAX - 9], sha256_hex(label, 4))
}

/// The first `bytes` bytes of the SHA-256 of `text`, as 2·`bytes` lowercase hex digits (run ids,
/// tags of long file names).
pub fn sha256_hex(text: &str, bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The longest name [`file_safe`] returns (room is left for a figure's prefix and suffix).
pub const FILE_SAFE_MAX: usize = 120;

/// Rows of cells as plain text, each column padded to its widest cell, two spaces between
/// columns, one line per row (for terminal tables: `icm compare`, `icm runs`).
pub fn aligned_rows<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_long_labels_stay_distinct() {
        assert_eq!(
            file_safe("icm-mixup(alpha=0.4) [lr=0.1]"),
            "icm-mixup_alpha_0.4___lr_0.1_"
        );
        let a = "m".repeat(300) + "a";
        let b = "m".repeat(300) + "b";
        let (fa, fb) = (file_safe(&a), file_safe(&b));
        assert_eq!(fa.len(), FILE_SAFE_MAX);
        assert!(fa.starts_with(&"m".repeat(FILE_SAFE_MAX - 9)), "{fa}");
        assert_ne!(
            fa, fb,
            "labels that differ past the cut keep distinct names"
        );
        assert_eq!(file_safe(&"x".repeat(FILE_SAFE_MAX)).len(), FILE_SAFE_MAX);
    }
}
