//! Scoring a trained network beyond its test set, once, after the last epoch: corrupted copies
//! of the test set (`evaluate:`) and out-of-distribution sets (`ood:`). The sets are built once
//! per grid ([`BeyondSets::build`]); corrupted copies are made one at a time while scoring, so
//! only one is in memory.

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Normal;

use crate::data::conform::conform;
use crate::data::corrupt::corrupt;
use crate::data::{Dataset, Standardiser};
use crate::metrics::{self, detection, CorruptedMetrics, OodMetrics, OodScore};
use crate::nn::{NetDevice, Network};
use crate::spec::evaluate::HELD_OUT;
use crate::spec::{EvaluateSpec, OodSource, OodSpec};

use super::eval::predict_logits;

/// What a run is scored on beyond the test set.
#[derive(Debug, Clone)]
pub struct BeyondSets {
    /// The test set's raw pixels (the first `evaluate.images`), which corruptions start from.
    pub raw_test: Dataset,
    /// The training pool's statistics, applied to every corrupted copy.
    pub standardiser: Standardiser,
    /// Named out-of-distribution sets, in the training shape, normalised.
    pub ood: Vec<(String, Dataset)>,
}

/// A run's scores beyond the test set.
#[derive(Debug, Clone, Default)]
pub struct BeyondScores {
    pub corrupted: Vec<CorruptedMetrics>,
    pub ood: Vec<OodMetrics>,
    /// Each set's MSP scores (the test set's under `""`): the histograms' data.
    pub msp: Vec<(String, Vec<f64>)>,
}

impl BeyondSets {
    /// The sets of `evaluate` and `ood` for a test set `raw_test` (raw pixels) normalised by
    /// `standardiser`; `held_out` holds the raw test images of the held-out classes.
    pub fn build(
        evaluate: Option<&EvaluateSpec>,
        ood: Option<&OodSpec>,
        raw_test: &Dataset,
        standardiser: &Standardiser,
        held_out: &Dataset,
    ) -> Result<BeyondSets> {
        let keep = evaluate.and_then(|e| e.images).unwrap_or(raw_test.len());
        let raw = raw_test.subset(&(0..keep.min(raw_test.len())).collect::<Vec<_>>());
        let mut sets = Vec::new();
        if let Some(spec) = ood {
            if !spec.held_out_classes.is_empty() {
                sets.push((HELD_OUT.to_string(), held_out.clone()));
            }
            for (name, source) in &spec.sets {
                let set = ood_set(source, raw_test, spec.seed)
                    .with_context(|| format!("ood.sets.{name}"))?;
                sets.push((name.clone(), set));
            }
        }
        for (_, set) in &mut sets {
            standardiser.apply(set);
        }
        Ok(BeyondSets {
            raw_test: raw,
            standardiser: standardiser.clone(),
            ood: sets,
        })
    }
}

/// The raw images of one out-of-distribution set, in the shape of `test`.
fn ood_set(source: &OodSource, test: &Dataset, seed: u64) -> Result<Dataset> {
    let (n, shape) = (test.len(), test.shape);
    let noise = |stream: u64, draw: &dyn Fn(&mut ChaCha8Rng) -> f32| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Dataset {
            images: (0..n * shape.numel()).map(|_| draw(&mut rng)).collect(),
            labels: vec![0; n],
            shape,
            classes: test.classes,
            background: vec![0.0; shape.numel()],
        }
    };
    Ok(match source {
        OodSource::Dataset(spec) => {
            let (_, other) = spec
                .load_raw()
                .with_context(|| format!("dataset `{}`", spec.name()))?;
            conform(&other, shape)
        }
        OodSource::UniformNoise => noise(0, &|r| r.gen::<f32>()),
        OodSource::GaussianNoise => {
            let normal = Normal::new(0.5f64, 0.25).expect("valid normal");
            noise(1, &|r| r.sample(normal).clamp(0.0, 1.0) as f32)
        }
    })
}

/// Scores `model` on every set of `sets`; `test_logits` are its logits on the (normalised)
/// test set, the in-distribution side of every detection.
pub fn score<D: NetDevice>(
    dev: &D,
    model: &mut Network<D>,
    evaluate: Option<&EvaluateSpec>,
    test_logits: &[f32],
    sets: &BeyondSets,
) -> BeyondScores {
    let classes = sets.raw_test.classes;
    let mut out = BeyondScores::default();
    if let Some(spec) = evaluate {
        for &c in &spec.corruptions {
            for &s in &spec.severities {
                let mut set = corrupt(&sets.raw_test, c, s, spec.seed);
                sets.standardiser.apply(&mut set);
                let logits = predict_logits(dev, model, &set);
                let (m, _, _) = metrics::evaluate(&logits, &set.labels, classes);
                out.corrupted.push(CorruptedMetrics {
                    corruption: c.name().to_string(),
                    severity: s,
                    accuracy: m.accuracy,
                    ece: m.ece,
                    nll: m.nll,
                });
            }
        }
    }
    if sets.ood.is_empty() {
        return out;
    }
    let inside: Vec<Vec<f64>> = OodScore::ALL
        .iter()
        .map(|s| s.scores(test_logits, classes))
        .collect();
    out.msp.push((String::new(), inside[0].clone()));
    for (name, set) in &sets.ood {
        let logits = predict_logits(dev, model, set);
        for (k, score) in OodScore::ALL.into_iter().enumerate() {
            let outside = score.scores(&logits, classes);
            if let Some(d) = detection(&inside[k], &outside) {
                out.ood.push(OodMetrics {
                    set: name.clone(),
                    score,
                    detection: d,
                });
            }
            if score == OodScore::Msp {
                out.msp.push((name.clone(), outside));
            }
        }
    }
    out
}
