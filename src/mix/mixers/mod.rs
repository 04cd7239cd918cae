//! Input mixers: how a batch's images are combined with their partners' once λ is drawn. Each
//! mixer is one file (a [`MixInputs`]) plus one row of the `mixers!` catalog below, which gives
//! it its YAML name; its presets are rows of `mix::method::PRESETS`.

pub mod cutmix;
pub mod mixup;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::data::ImageShape;

/// What a mixer does to a batch (B rows of `shape`).
pub trait MixInputs {
    /// α of λ ~ Beta(α, α) when the user gives none.
    const DEFAULT_ALPHA: f64;
    /// The mixed inputs. `lambda[i]` is sample i's weight of its own image (one value repeated
    /// when λ is drawn per batch, `per_sample` false); a mixer that cannot honour it exactly
    /// writes back the weight it realised (CutMix: the share of pixels kept). Any randomness comes
    /// from `rng`, drawn after λ.
    fn mix(
        x: &[f32],
        shape: ImageShape,
        partner: &[usize],
        lambda: &mut [f64],
        per_sample: bool,
        rng: &mut dyn RngCore,
    ) -> Vec<f32>;
}

/// Builds [`Mixer`] (`none` plus one variant per mixer) from the catalog rows
/// `"name" => Variant(Type)`.
macro_rules! mixers {
    ($($name:literal => $variant:ident($ty:ty),)*) => {
        /// How inputs are mixed (`mixer:` in YAML).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Mixer {
            /// No mixing: λ = 1.
            #[serde(rename = "none")]
            None,
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Mixer {
            /// α when the user gives none; `None` for no mixing.
            pub fn default_alpha(self) -> Option<f64> {
                match self {
                    Mixer::None => None,
                    $(Mixer::$variant => Some(<$ty as MixInputs>::DEFAULT_ALPHA),)*
                }
            }

            /// Applies the mixer (see [`MixInputs::mix`]); `none` returns the batch as it is.
            pub fn mix(
                self,
                x: &[f32],
                shape: ImageShape,
                partner: &[usize],
                lambda: &mut [f64],
                per_sample: bool,
                rng: &mut dyn RngCore,
            ) -> Vec<f32> {
                match self {
                    Mixer::None => x.to_vec(),
                    $(Mixer::$variant => <$ty as MixInputs>::mix(x, shape, partner, lambda, per_sample, rng),)*
                }
            }
        }
    };
}

mixers! {
    "mixup" => Mixup(mixup::Mixup),
    "cutmix" => Cutmix(cutmix::CutMix),
}
