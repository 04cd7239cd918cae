//! The `claims:` section: which pairs of methods a report compares with paired statistics. By
//! default every ICM method is compared with its twin that uses the label loss (same mixer, label
//! rule and parameters: `icm-mixup` with `mixup`), on accuracy and ECE; `claims:` adds others,
//! `{a: icm-mixup, b: erm, metric: nll}` (metric defaults to accuracy).

use serde::Deserialize;

use crate::metrics::catalog::{metric, names};
use crate::mix::{Method, Target};

/// A claim as written in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// The method claimed better (its name in tables).
    pub a: String,
    /// The method it is compared with.
    pub b: String,
    /// A metric of the catalog; accuracy when absent.
    #[serde(default)]
    pub metric: Option<String>,
}

/// A resolved claim: "method a beats method b on this metric", tested on every split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub a: String,
    pub b: String,
    pub metric: String,
}

impl ClaimSpec {
    /// Checks the names against the experiment's methods and the metric against the catalog.
    pub fn resolve(&self, methods: &[Method]) -> Result<Claim, String> {
        let names_of = || {
            methods
                .iter()
                .map(|m| format!("`{}`", m.display_name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (key, name) in [("a", &self.a), ("b", &self.b)] {
            if !methods.iter().any(|m| &m.display_name() == name) {
                return Err(format!(
                    "`{key}: {name}` is not a method of this experiment; use one of {}",
                    names_of()
                ));
            }
        }
        if self.a == self.b {
            return Err(format!("`a` and `b` are both `{}`", self.a));
        }
        let metric_name = self.metric.clone().unwrap_or_else(|| "accuracy".into());
        if metric(&metric_name).is_none() {
            return Err(format!(
                "unknown metric `{metric_name}`; use one of {}",
                names()
            ));
        }
        Ok(Claim {
            a: self.a.clone(),
            b: self.b.clone(),
            metric: metric_name,
        })
    }
}

/// Every ICM method against its label-loss twin, on accuracy and on ECE.
pub fn default_claims(methods: &[Method]) -> Vec<Claim> {
    let same: Vec<(Method, String)> = methods.iter().map(|m| (m.clone(), String::new())).collect();
    default_claims_within(&same)
}

/// [`default_claims`] for methods that each come with the rest of their configuration (a
/// results folder may hold several): a twin must share it.
pub fn default_claims_within(methods: &[(Method, String)]) -> Vec<Claim> {
    let mut out = Vec::new();
    for (m, context) in methods.iter().filter(|(m, _)| m.target == Target::Icm) {
        let mut twin = m.clone();
        twin.target = Target::Label;
        twin.axes = None;
        let settings = twin.settings();
        if let Some((b, _)) = methods
            .iter()
            .find(|(x, c)| c == context && x.settings() == settings)
        {
            for metric in ["accuracy", "ece"] {
                out.push(Claim {
                    a: m.display_name(),
                    b: b.display_name(),
                    metric: metric.into(),
                });
            }
        }
    }
    out
}

/// The default claims followed by the listed ones not already among them.
pub fn all_claims(methods: &[Method], listed: &[Claim]) -> Vec<Claim> {
    let mut out = default_claims(methods);
    for c in listed {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}
