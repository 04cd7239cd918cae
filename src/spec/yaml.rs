//! YAML errors a user can act on: `file:line:column: message`, with a "did you mean" hint when
//! an unknown key or name is close to a valid one.

use std::path::Path;

/// Formats a serde_yaml error as `file:line:column: message`, with a "did you mean" hint when an
/// unknown key or name is close to a valid one.
pub fn yaml_error(path: &Path, err: &serde_yaml::Error) -> String {
    // serde_yaml appends " at line L column C"; we move the place to the front.
    let message = bare_message(err);
    let place = match err.location() {
        Some(loc) => format!("{}:{}:{}", path.display(), loc.line(), loc.column()),
        None => path.display().to_string(),
    };
    let mut out = format!("{place}: {message}");
    if unknown_name(&message) == Some("<<") {
        // serde_yaml reads YAML 1.2, which has no merge keys: `<<` is an ordinary key to it.
        out.push_str(
            "\n  hint: YAML merge keys (`<<: *anchor`) are not supported; write the keys out",
        );
    } else if let Some(hint) = did_you_mean(&message) {
        out.push_str(&format!("\n  hint: did you mean `{hint}`?"));
    }
    out
}

/// The message of a serde_yaml error without the place serde_yaml appends, and without the
/// names of our Rust types (`expected struct TrainSpec` reads `expected a map of settings`).
pub fn bare_message(err: &serde_yaml::Error) -> String {
    let raw = err.to_string();
    let message = match raw.rfind(" at line ") {
        Some(i) => &raw[..i],
        None => &raw,
    };
    without_type_names(message)
}

/// Replaces serde's `struct Name` in "expected struct Name" with words.
fn without_type_names(message: &str) -> String {
    const STRUCT: &str = "expected struct ";
    let Some(start) = message.find(STRUCT) else {
        return message.to_string();
    };
    let rest = &message[start + STRUCT.len()..];
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    format!(
        "{}expected a map of settings (`key: value`){}",
        &message[..start],
        &rest[name_end..]
    )
}

/// The wrong name of serde's "unknown field `x`, expected ..." (or "unknown variant").
pub fn unknown_name(message: &str) -> Option<&str> {
    let is_unknown = message.contains("unknown field") || message.contains("unknown variant");
    is_unknown.then(|| message.split('`').nth(1)).flatten()
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), returns the
/// valid name closest to `x` when it is plausibly a typo.
pub fn did_you_mean(message: &str) -> Option<String> {
    let is_unknown = message.contains("unknown field") || message.contains("unknown variant");
    if !is_unknown {
        return None;
    }
    let mut names = message.split('`').skip(1).step_by(2);
    let wrong = names.next()?;
    names
        .map(|cand| (strsim::damerau_levenshtein(wrong, cand), cand))
        .filter(|(dist, cand)| *dist <= 2.max(cand.len() / 3))
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, cand)| cand.to_string())
}

/// The text of a YAML file from its bytes: a UTF-8 byte-order mark is dropped; bytes that are
/// not UTF-8 are refused with their byte offset and line:column.
pub fn yaml_text(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
    let bytes = match bytes.strip_prefix("\u{feff}".as_bytes()) {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        format!(
            "{}:{line}:{column}: byte {at} (0x{:02x}) is not UTF-8 text; save the file as UTF-8 \
             (an experiment file is YAML text, not a binary file)",
            path.display(),
            e.as_bytes()[at]
        )
    })
}

/// The place (line, column, bracket) of the first `[` or `{` never closed in YAML `text`,
/// skipping quoted strings and comments. Only consulted when the YAML does not parse: in
/// plain scalars brackets may legally stand alone.
pub fn unclosed_bracket(text: &str) -> Option<(usize, usize, char)> {
    let mut open: Vec<(usize, usize, char)> = Vec::new();
    for (l, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (c, ch) in line.chars().enumerate() {
            match (quote, ch) {
                (Some(q), _) if ch == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(ch),
                (None, '#') if prev.is_whitespace() => break,
                (None, '[' | '{') => open.push((l + 1, c + 1, ch)),
                (None, ']' | '}') => {
                    open.pop();
                }
                _ => {}
            }
            prev = ch;
        }
    }
    open.first().copied()
}

/// A parse error of `text`, naming the missing bracket when one is never closed, and the line of
/// the second occurrence of a duplicated key (serde places it at the start of its map).
pub fn yaml_parse_error(path: &Path, text: &str, err: &serde_yaml::Error) -> String {
    if let Some(line) = duplicate_key_line(text, &err.to_string()) {
        let message = yaml_error(path, err);
        let after_place = message
            .split_once(": ")
            .map_or(message.as_str(), |(_, m)| m);
        return format!(
            "{}:{line}:1: {after_place}; keep one of the two entries",
            path.display()
        );
    }
    if err.to_string().contains("more than one document") {
        let second = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("---"))
            .map(|(i, _)| i + 1)
            .find(|&i| {
                text.lines()
                    .take(i - 1)
                    .any(|l| !l.trim().is_empty() && !l.starts_with("---"))
            });
        if let Some(line) = second {
            return format!(
                "{}:{line}:1: a second YAML document starts here; an experiment file holds one \
                 (remove this `---` line and what follows, or put it in its own file)",
                path.display()
            );
        }
    }
    match unclosed_bracket(text) {
        Some((line, column, bracket)) => {
            let close = if bracket == '[' { ']' } else { '}' };
            format!(
                "{}:{line}:{column}: this `{bracket}` is never closed: add the missing `{close}`",
                path.display()
            )
        }
        None => yaml_error(path, err),
    }
}

/// For "duplicate field `key`": the line of the key's second occurrence at the start of a line.
fn duplicate_key_line(text: &str, message: &str) -> Option<usize> {
    let key = message
        .split("duplicate field `")
        .nth(1)?
        .split('`')
        .next()?;
    let lead = format!("{key}:");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().trim_start_matches("- ").starts_with(&lead))
        .nth(1)
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_key() {
        let msg = "train: unknown field `epocs`, expected one of `epochs`, `batch_size`, `lr`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("epochs"));
        let msg = "unknown field `zzzzzz`, expected one of `epochs`, `lr`";
        assert_eq!(did_you_mean(msg), None);
    }

    #[test]
    fn unclosed_brackets_are_found_outside_strings_and_comments() {
        assert_eq!(unclosed_bracket("a:\n  - [balanced\n"), Some((2, 5, '[')));
        assert_eq!(unclosed_bracket("a: {b: [1, 2]\n"), Some((1, 4, '{')));
        assert_eq!(unclosed_bracket("a: [1,\n  2]\nb: '[' # [\n"), None);
    }

    #[test]
    fn byte_order_marks_are_dropped_and_other_bytes_placed() {
        let p = Path::new("x.yaml");
        assert_eq!(
            yaml_text(p, b"\xef\xbb\xbfname: q".to_vec()).unwrap(),
            "name: q"
        );
        let err = yaml_text(p, b"name: q\nab\xffc".to_vec()).unwrap_err();
        assert!(
            err.starts_with("x.yaml:2:3: byte 10 (0xff) is not UTF-8 text"),
            "{err}"
        );
    }
}
