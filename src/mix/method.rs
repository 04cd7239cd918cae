//! Training methods as a composition of three independent choices (`docs/methods.md`):
//! input **mixer** × **label rule** × **target** loss, plus the RegMixup **regulariser**.
//! Named presets (`mixup`, `icm-mixup`, ...) are only default settings of these choices: the
//! [`PRESETS`] table.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub use super::mixers::Mixer;

/// Weight λ_y given to a sample's own label in its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelRule {
    /// λ_y = λ.
    Standard,
    /// Remix (Chou et al. 2020): favours the minority class of a pair (κ, τ).
    Remix,
}

/// Loss applied to the mixed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Soft-target cross-entropy over the C classes.
    Label,
    /// Infinite Class Mixup: dual contrastive loss over the batch's mixed classifiers.
    Icm,
}

/// Which softmax axes of the ICM score matrix S = Z·Tᵀ are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcmAxes {
    /// Rows and columns (official `icmixup-f`).
    #[default]
    Dual,
    /// Rows only: each mixed sample picks its own mixed classifier (`icmixup-s`).
    Pair,
    /// Columns only: each mixed classifier picks its own mixed sample (`icmixup-c`).
    Class,
}

/// λ ~ Beta(α, α) drawn once per batch (official code) or once per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LambdaSampling {
    #[default]
    PerBatch,
    PerSample,
}

/// A fully resolved method, as stored in each run's `config.yaml`. Parameters that do not apply
/// to the chosen composition are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// The preset it started from, or the user's `name:`.
    pub name: String,
    pub mixer: Mixer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaSampling>,
    #[serde(rename = "label")]
    pub label_rule: LabelRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kappa: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axes: Option<IcmAxes>,
    pub regularised: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Label smoothing ε of the targets: t := (1 − ε)·t + ε/C (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    /// Stabiliser: identical mixed classifiers are not negatives of each other in the ICM loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_duplicates: Option<bool>,
    /// Stabiliser: the ICM scores are divided by this temperature τ before the softmax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Stabiliser: the gradient is scaled down to this norm when it is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// Stabiliser: the learning rate rises linearly over this many first epochs, (e + 1)/W of
    /// the schedule's rate in epoch e < W.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    /// Name shown in tables, legends and file names: the user's `name:`, else the preset plus
    /// every parameter that differs from it. Not part of the run id.
    #[serde(rename = "label_text")]
    pub display_name: String,
}

impl Method {
    pub fn uses_icm(&self) -> bool {
        self.target == Target::Icm
    }

    /// The ICM loss this method trains with (its axes and stabilisers).
    pub fn icm_loss(&self) -> super::losses::IcmLoss {
        super::losses::IcmLoss {
            axes: self.axes.unwrap_or_default(),
            mask_duplicates: self.mask_duplicates.unwrap_or(false),
            temperature: self.temperature.unwrap_or(1.0),
        }
    }

    /// The factor of the schedule's learning rate in epoch `epoch` (0-based): the warm-up ramp.
    pub fn warmup_factor(&self, epoch: usize) -> f64 {
        match self.warmup_epochs {
            Some(w) if epoch < w => (epoch + 1) as f64 / w as f64,
            _ => 1.0,
        }
    }

    /// The name shown in tables, legends and file names.
    pub fn display_name(&self) -> String {
        self.display_name.clone()
    }

    /// The settings that decide what the method trains: everything but the display names.
    pub fn settings(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("method serialises");
        if let Some(o) = v.as_object_mut() {
            o.remove("name");
            o.remove("label_text");
        }
        v
    }
}

/// A preset: a named composition with its default parameters.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub mixer: Mixer,
    pub label_rule: LabelRule,
    pub regularised: bool,
    /// The mixer's α when it differs from the mixer's own default.
    pub alpha: Option<f64>,
    /// Whether `icm-<name>` exists too (the same preset with `target: icm`).
    pub with_icm: bool,
}

/// The presets users write by name; each with `with_icm` also exists as `icm-<name>`. `custom`
/// (any composition, spelled out) is the last row.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "erm",
        mixer: Mixer::None,
        label_rule: LabelRule::Standard,
        regularised: false,
        alpha: None,
        with_icm: false,
    },
    Preset {
        name: "mixup",
        mixer: Mixer::Mixup,
        label_rule: LabelRule::Standard,
        regularised: false,
        alpha: None,
        with_icm: true,
    },
    Preset {
        name: "cutmix",
        mixer: Mixer::Cutmix,
        label_rule: LabelRule::Standard,
        regularised: false,
        alpha: None,
        with_icm: true,
    },
    Preset {
        name: "remix",
        mixer: Mixer::Mixup,
        label_rule: LabelRule::Remix,
        regularised: false,
        alpha: Some(1.0),
        with_icm: true,
    },
    Preset {
        name: "regmixup",
        mixer: Mixer::Mixup,
        label_rule: LabelRule::Standard,
        regularised: true,
        alpha: Some(20.0),
        with_icm: true,
    },
    Preset {
        name: "custom",
        mixer: Mixer::None,
        label_rule: LabelRule::Standard,
        regularised: false,
        alpha: None,
        with_icm: false,
    },
];

/// Every name a method entry may start with: the presets, their ICM versions, then `custom`.
pub fn preset_names() -> Vec<String> {
    let (custom, named) = PRESETS.split_last().expect("presets");
    let mut names: Vec<String> = named.iter().map(|p| p.name.to_string()).collect();
    names.extend(
        named
            .iter()
            .filter(|p| p.with_icm)
            .map(|p| format!("icm-{}", p.name)),
    );
    names.push(custom.name.into());
    names
}

/// The preset row and whether it is the ICM version, for a name a user wrote.
fn find_preset(name: &str) -> Option<(&'static Preset, bool)> {
    let (base, icm) = match name.strip_prefix("icm-") {
        Some(base) => (base, true),
        None => (name, false),
    };
    PRESETS
        .iter()
        .find(|p| p.name == base && (!icm || p.with_icm))
        .map(|p| (p, icm))
}

/// serde's "unknown variant" message for a name that is no preset (the "did you mean" hint
/// reads this form).
fn unknown_preset(name: &str) -> String {
    let names: Vec<String> = preset_names().iter().map(|n| format!("`{n}`")).collect();
    format!(
        "unknown variant `{name}`, expected one of {}",
        names.join(", ")
    )
}

/// Optional settings a user may give a preset; each overrides the preset's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodParams {
    pub name: Option<String>,
    pub mixer: Option<Mixer>,
    pub alpha: Option<f64>,
    pub lambda: Option<LambdaSampling>,
    #[serde(rename = "label")]
    pub label_rule: Option<LabelRule>,
    pub kappa: Option<f64>,
    pub tau: Option<f64>,
    pub target: Option<Target>,
    pub axes: Option<IcmAxes>,
    pub regularised: Option<bool>,
    pub gamma: Option<f64>,
    pub label_smoothing: Option<f64>,
    pub mask_duplicates: Option<bool>,
    pub temperature: Option<f64>,
    pub clip_grad_norm: Option<f64>,
    pub warmup_epochs: Option<usize>,
}

/// One entry of the `methods:` list: `- mixup` or `- mixup: {alpha: 0.4}`.
#[derive(Debug, Clone)]
pub struct MethodEntry {
    pub preset: String,
    pub params: MethodParams,
}

impl<'de> Deserialize<'de> for MethodEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = MethodEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a method preset name (e.g. `icm-mixup`) or `preset: {alpha: ...}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MethodEntry, E> {
                if find_preset(v).is_none() {
                    return Err(E::custom(unknown_preset(v)));
                }
                Ok(MethodEntry {
                    preset: v.to_string(),
                    params: MethodParams::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MethodEntry, A::Error> {
                let preset: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("empty method entry"))?;
                if find_preset(&preset).is_none() {
                    return Err(de::Error::custom(unknown_preset(&preset)));
                }
                let params: Option<MethodParams> = map.next_value()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one method per list entry: put `{extra}` in its own `- {extra}` item, \
                         or its settings inside `{preset}: {{...}}`"
                    )));
                }
                Ok(MethodEntry {
                    preset,
                    params: params.unwrap_or_default(),
                })
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// The composition behind a preset name, with that preset's default parameters.
fn preset_defaults(preset: &str) -> Method {
    let (p, icm) = find_preset(preset).expect("preset names are checked at parse time");
    let mut m = Method {
        name: preset.to_string(),
        mixer: p.mixer,
        alpha: p.alpha,
        lambda: None,
        label_rule: p.label_rule,
        kappa: None,
        tau: None,
        target: if icm { Target::Icm } else { Target::Label },
        axes: None,
        regularised: p.regularised,
        gamma: None,
        label_smoothing: None,
        mask_duplicates: None,
        temperature: None,
        clip_grad_norm: None,
        warmup_epochs: None,
        display_name: String::new(),
    };
    fill_dependent_defaults(&mut m);
    m
}

/// Gives every parameter that applies to the composition its default, and removes the rest.
fn fill_dependent_defaults(m: &mut Method) {
    match m.mixer.default_alpha() {
        None => {
            m.alpha = None;
            m.lambda = None;
        }
        Some(alpha) => {
            m.alpha.get_or_insert(alpha);
            m.lambda.get_or_insert(LambdaSampling::PerBatch);
        }
    }
    if m.label_rule == LabelRule::Remix {
        m.kappa.get_or_insert(3.0);
        m.tau.get_or_insert(0.5);
    } else {
        m.kappa = None;
        m.tau = None;
    }
    if m.target == Target::Icm {
        m.axes.get_or_insert(IcmAxes::Dual);
    } else {
        m.axes = None;
    }
    if m.regularised {
        m.gamma.get_or_insert(1.0);
    } else {
        m.gamma = None;
    }
}

impl MethodEntry {
    pub fn preset_name(&self) -> &str {
        &self.preset
    }

    /// Applies the user's settings to the preset, checks them, and builds the display name.
    pub fn resolve(&self) -> Result<Method, String> {
        let preset = preset_defaults(&self.preset);
        let p = &self.params;
        let mut m = preset.clone();
        m.mixer = p.mixer.unwrap_or(m.mixer);
        m.label_rule = p.label_rule.unwrap_or(m.label_rule);
        m.target = p.target.unwrap_or(m.target);
        m.regularised = p.regularised.unwrap_or(m.regularised);
        if self.preset == "custom" && (p.mixer.is_none() || p.target.is_none()) {
            return Err("`custom` needs both `mixer:` and `target:` \
                 (e.g. `custom: {mixer: cutmix, label: remix, target: icm}`)"
                .into());
        }
        p.check_applicable(&m)?;
        if m.mixer != preset.mixer && m.mixer != Mixer::None && p.alpha.is_none() {
            // Switching mixer: use the new mixer's default α, not the old one's.
            m.alpha = None;
        }
        m.alpha = p.alpha.or(m.alpha);
        m.lambda = p.lambda.or(m.lambda);
        m.kappa = p.kappa.or(m.kappa);
        m.tau = p.tau.or(m.tau);
        m.axes = p.axes.or(m.axes);
        m.gamma = p.gamma.or(m.gamma);
        m.label_smoothing = p.label_smoothing.filter(|&e| e != 0.0);
        // Writing a stabiliser's off value is the same run as leaving it out.
        m.mask_duplicates = p.mask_duplicates.filter(|&on| on);
        m.temperature = p.temperature.filter(|&t| t != 1.0);
        m.clip_grad_norm = p.clip_grad_norm;
        m.warmup_epochs = p.warmup_epochs.filter(|&w| w > 1);
        fill_dependent_defaults(&mut m);
        m.check_values()?;
        m.display_name = match &p.name {
            Some(n) if n.trim().is_empty() || n.contains('|') => {
                return Err("`name` must be non-empty and without `|`".into())
            }
            Some(n) => n.clone(),
            None => label_with_overrides(&self.preset, &preset, &m),
        };
        if let Some(n) = &p.name {
            m.name = n.clone();
        }
        Ok(m)
    }
}

impl MethodParams {
    /// Refuses settings that would have no effect on the composition `m`.
    fn check_applicable(&self, m: &Method) -> Result<(), String> {
        let needs = |given: bool, applies: bool, key: &str, why: &str| -> Result<(), String> {
            if given && !applies {
                Err(format!("`{key}` has no effect here: {why}"))
            } else {
                Ok(())
            }
        };
        needs(
            self.alpha.is_some() || self.lambda.is_some(),
            m.mixer != Mixer::None,
            "alpha/lambda",
            "this method does not mix inputs (mixer: none)",
        )?;
        needs(
            self.kappa.is_some() || self.tau.is_some(),
            m.label_rule == LabelRule::Remix,
            "kappa/tau",
            "they are Remix parameters (set `label: remix`)",
        )?;
        needs(
            self.axes.is_some(),
            m.target == Target::Icm,
            "axes",
            "it selects the ICM loss axes (set `target: icm` or use an icm-* preset)",
        )?;
        needs(
            self.gamma.is_some(),
            m.regularised,
            "gamma",
            "it weights the RegMixup term (set `regularised: true`)",
        )?;
        needs(
            self.mask_duplicates.is_some() || self.temperature.is_some(),
            m.target == Target::Icm,
            "mask_duplicates/temperature",
            "they stabilise the ICM loss (set `target: icm` or use an icm-* preset)",
        )
    }
}

impl Method {
    /// Checks the resolved parameters' ranges.
    fn check_values(&self) -> Result<(), String> {
        if let Some(a) = self.alpha.filter(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(format!(
                "alpha must be > 0 and finite (λ ~ Beta(α, α)), got {a}; use `erm` for no mixing"
            ));
        }
        if let Some(k) = self.kappa.filter(|k| !(k.is_finite() && *k >= 1.0)) {
            return Err(format!("kappa must be ≥ 1 and finite, got {k}"));
        }
        if let Some(t) = self.tau.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(format!("tau must be in [0, 1], got {t}"));
        }
        if let Some(e) = self.label_smoothing.filter(|e| !(0.0..1.0).contains(e)) {
            return Err(format!("label_smoothing must be in [0, 1), got {e}"));
        }
        if let Some(g) = self.gamma.filter(|g| !(g.is_finite() && *g >= 0.0)) {
            return Err(format!("gamma must be ≥ 0 and finite, got {g}"));
        }
        if let Some(t) = self.temperature.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(format!("temperature must be > 0 and finite, got {t}"));
        }
        if let Some(c) = self.clip_grad_norm.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(format!("clip_grad_norm must be > 0 and finite, got {c}"));
        }
        Ok(())
    }
}

/// `preset` plus `(key=value, ...)` for every resolved setting that differs from the preset.
fn label_with_overrides(preset_name: &str, preset: &Method, m: &Method) -> String {
    let mut diffs = Vec::new();
    let ser = |x: &Method| serde_json::to_value(x).expect("method serialises");
    let (a, b) = (ser(preset), ser(m));
    for key in [
        "mixer",
        "alpha",
        "lambda",
        "label",
        "kappa",
        "tau",
        "target",
        "axes",
        "regularised",
        "gamma",
        "label_smoothing",
        "mask_duplicates",
        "temperature",
        "clip_grad_norm",
        "warmup_epochs",
    ] {
        let (va, vb) = (a.get(key), b.get(key));
        if va != vb {
            if let Some(v) = vb {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                diffs.push(format!("{key}={text}"));
            }
        }
    }
    if diffs.is_empty() {
        preset_name.to_string()
    } else {
        format!("{preset_name}({})", diffs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(yaml: &str) -> MethodEntry {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn presets_resolve_to_their_composition() {
        let m = entry("icm-regmixup").resolve().unwrap();
        assert_eq!(m.mixer, Mixer::Mixup);
        assert_eq!(m.alpha, Some(20.0));
        assert_eq!(m.target, Target::Icm);
        assert_eq!(m.axes, Some(IcmAxes::Dual));
        assert!(m.regularised);
        assert_eq!(m.gamma, Some(1.0));
        assert_eq!(m.display_name(), "icm-regmixup");
        let e = entry("erm").resolve().unwrap();
        assert_eq!((e.mixer, e.alpha, e.axes), (Mixer::None, None, None));
    }

    #[test]
    fn overrides_show_in_label() {
        let m = entry("icm-mixup: {alpha: 0.4, axes: pair}")
            .resolve()
            .unwrap();
        assert_eq!(m.alpha, Some(0.4));
        assert_eq!(m.axes, Some(IcmAxes::Pair));
        assert_eq!(m.display_name(), "icm-mixup(alpha=0.4,axes=pair)");
    }

    #[test]
    fn bad_settings_are_refused() {
        let err = entry("mixup: {alpha: 0}").resolve().unwrap_err();
        assert!(err.contains("alpha must be > 0"), "{err}");
        let err = entry("erm: {alpha: 1.0}").resolve().unwrap_err();
        assert!(err.contains("no effect"), "{err}");
        let err = entry("mixup: {axes: dual}").resolve().unwrap_err();
        assert!(err.contains("axes"), "{err}");
        let err = serde_yaml::from_str::<MethodEntry>("icm-mixpu").unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `icm-mixpu`"),
            "{err}"
        );
    }
}
