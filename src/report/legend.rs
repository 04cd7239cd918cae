//! The methods legend: every method's full resolved settings, as a Markdown table.

use crate::mix::Method;
use crate::util::fmt_num;

/// A table of every method's full resolved settings.
pub fn methods_legend(methods: &[Method]) -> String {
    let mut s = String::from(
        "## Methods\n\n| method | mixer | α | λ drawn | label rule (κ, τ) | target (axes) | RegMixup γ | label smoothing | stabilisers |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map_or("–".to_string(), fmt_num);
    for m in methods {
        let label_rule = match (m.kappa, m.tau) {
            (Some(k), Some(t)) => format!("{} ({k}, {t})", name(&m.label_rule)),
            _ => name(&m.label_rule),
        };
        let target = match m.axes {
            Some(a) => format!("{} ({})", name(&m.target), name(&a)),
            None => name(&m.target),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {label_rule} | {target} | {} | {} | {} |\n",
            m.display_name(),
            name(&m.mixer),
            opt(m.alpha),
            m.lambda.map_or("–".to_string(), |l| name(&l)),
            if m.regularised {
                opt(m.gamma)
            } else {
                "–".into()
            },
            opt(m.label_smoothing),
            stabilisers(m),
        ));
    }
    s.push('\n');
    s
}

/// The stabilisers a method trains with, `–` for none.
fn stabilisers(m: &Method) -> String {
    let mut on = Vec::new();
    if m.mask_duplicates == Some(true) {
        on.push("duplicates masked".to_string());
    }
    if let Some(t) = m.temperature {
        on.push(format!("score temperature {}", fmt_num(t)));
    }
    if let Some(c) = m.clip_grad_norm {
        on.push(format!("gradient norm clipped at {}", fmt_num(c)));
    }
    if let Some(w) = m.warmup_epochs {
        on.push(format!("{w}-epoch warm-up"));
    }
    if on.is_empty() {
        "–".into()
    } else {
        on.join(", ")
    }
}

/// The YAML spelling of a method setting (`cutmix`, `per_batch`, ...).
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}
