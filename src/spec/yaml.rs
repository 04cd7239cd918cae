//! YAML errors a user can act on: `file:line:column: message`, with a "did you mean" hint when
//! an unknown key or name is close to a valid one.

use std::path::Path;

/// Formats a serde_yaml error as `file:line:column: message`, with a "did you mean" hint when an
/// unknown key or name is close to a valid one.
pub fn yaml_error(path: &Path, err: &serde_yaml::Error) -> String {
    let raw = err.to_string();
    // serde_yaml appends " at line L column C"; we move the place to the front.
    let message = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.clone(),
    };
    let place = match err.location() {
        Some(loc) => format!("{}:{}:{}", path.display(), loc.line(), loc.column()),
        None => path.display().to_string(),
    };
    let mut out = format!("{place}: {message}");
    if let Some(hint) = did_you_mean(&message) {
        out.push_str(&format!("\n  hint: did you mean `{hint}`?"));
    }
    out
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), returns the
/// valid name closest to `x` when it is plausibly a typo.
fn did_you_mean(message: &str) -> Option<String> {
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
}
