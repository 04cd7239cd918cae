//! The tensor type shared by the losses and the networks.

use dfdx::prelude::{NoneTape, Tensor};

/// A runtime-shaped matrix (rows × columns) on device `D` with tape `T`.
pub type Matrix<D, T = NoneTape> = Tensor<(usize, usize), f32, D, T>;
