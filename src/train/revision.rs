//! The trainer's revision, and the defects earlier revisions had. A run trained by a revision
//! with a defect that affects its configuration is not evidence: its record is superseded, the
//! grid trains it again, and its checkpoints are not resumed. Fixing a defect that changes
//! results means adding a row to [`DEFECTS`] and raising [`TRAINER_REVISION`].

use crate::data::{Corruption, DatasetSpec};
use crate::nn::Arch;
use crate::spec::RunConfig;

/// The revision of the trainer in this build, stored in every run record and checkpoint.
/// Records written before revisions were stored count as revision 1.
pub const TRAINER_REVISION: u32 = 3;

/// The revision records and checkpoints without one were written by.
pub fn unrecorded_revision() -> u32 {
    1
}

/// A defect of earlier trainers that changed results.
pub struct Defect {
    /// The first revision without it.
    pub fixed_in: u32,
    pub what: &'static str,
    /// Whether a run of this configuration was affected.
    pub affects: fn(&RunConfig) -> bool,
}

/// Every known defect that changed results, oldest first.
pub const DEFECTS: &[Defect] = &[
    Defect {
        fixed_in: 2,
        what: "RegMixup on the MLP trained on the mixed-batch gradient alone: dfdx's CPU slice \
           backward overwrote the clean pass's gradient",
        affects: |c| c.method.regularised && c.model.arch == Arch::Mlp,
    },
    Defect {
        fixed_in: 3,
        what: "the gaussian_blur corruption of `evaluate:` scaled σ by max(H, W)/28 instead of \
           max(H, W, 28)/28: on images smaller than 28 pixels it blurred several times less \
           than documented (σ 0.11 instead of 0.4 pixels at severity 1 on the 8 × 8 digits)",
        affects: |c| {
            let blurred = c
                .evaluate
                .as_ref()
                .is_some_and(|e| e.corruptions.contains(&Corruption::GaussianBlur));
            // Sources whose images can be under 28 pixels; padding to 28 or more puts them out of
            // reach of the defect. An `idx` folder of 28 × 28 images is caught too (its size is
            // only known once it loads): it is trained again, a cost, not a wrong result.
            let small = match &c.dataset {
                DatasetSpec::Digits(_) | DatasetSpec::Idx(_) => true,
                DatasetSpec::Folder(f) => f.size < 28,
                _ => false,
            };
            blurred && small && c.preprocess.pad_to.is_none_or(|p| p < 28)
        },
    },
];

/// The defect that makes a run of `config` trained by `revision` untrustworthy, if any.
pub fn defect_affecting(config: &RunConfig, revision: u32) -> Option<&'static Defect> {
    DEFECTS
        .iter()
        .find(|d| revision < d.fixed_in && (d.affects)(config))
}
