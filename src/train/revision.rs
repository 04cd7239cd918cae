//! The trainer's revision, and the defects earlier revisions had. A run trained by a revision
//! with a defect that affects its configuration is not evidence: its record is superseded, the
//! grid trains it again, and its checkpoints are not resumed. Fixing a defect that changes
//! results means adding a row to [`DEFECTS`] and raising [`TRAINER_REVISION`].

use crate::nn::Arch;
use crate::spec::RunConfig;

/// The revision of the trainer in this build, stored in every run record and checkpoint.
/// Records written before revisions were stored count as revision 1.
pub const TRAINER_REVISION: u32 = 2;

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
pub const DEFECTS: &[Defect] = &[Defect {
    fixed_in: 2,
    what: "RegMixup on the MLP trained on the mixed-batch gradient alone: dfdx's CPU slice \
           backward overwrote the clean pass's gradient",
    affects: |c| c.method.regularised && c.model.arch == Arch::Mlp,
}];

/// The defect that makes a run of `config` trained by `revision` untrustworthy, if any.
pub fn defect_affecting(config: &RunConfig, revision: u32) -> Option<&'static Defect> {
    DEFECTS
        .iter()
        .find(|d| revision < d.fixed_in && (d.affects)(config))
}
