//! Flattening JSON values into dotted key paths (`train.lr`), the form in which run
//! configurations are compared, grouped and shown.

/// Flattens a JSON value into `prefix.key` → leaf pairs (lists are leaves).
pub fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// A leaf as text: strings without quotes, everything else as JSON.
pub fn leaf_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_objects_become_dotted_paths() {
        let v = serde_json::json!({"train": {"lr": 0.1, "schedule": "cosine"}, "hidden": [16, 8]});
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        let text: Vec<(String, String)> =
            out.iter().map(|(k, v)| (k.clone(), leaf_text(v))).collect();
        assert_eq!(
            text,
            [
                ("hidden".to_string(), "[16,8]".to_string()),
                ("train.lr".to_string(), "0.1".to_string()),
                ("train.schedule".to_string(), "cosine".to_string())
            ]
        );
    }
}
