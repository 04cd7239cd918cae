//! The methods layer: what a method is ([`method`]: mixer × label rule × target, and the named
//! presets), how a batch is mixed ([`rule`], with the input [`mixers`]), and the losses on the
//! mixed batch ([`losses`]: soft-target cross-entropy and the Infinite Class Mixup loss). All of
//! it works on plain slices and generic dfdx tensors, so it drops into any dfdx training loop.

pub mod losses;
pub mod method;
pub mod mixers;
pub mod rule;

pub use losses::{icm_loss, regmixup_total, soft_target_cross_entropy, target_loss};
pub use method::{IcmAxes, LabelRule, LambdaSampling, Method, MethodEntry, Target};
pub use mixers::Mixer;
pub use rule::{mix_batch, MixedBatch};
