//! `icm`: an experiment harness for Infinite Class Mixup (Mensink & Mettes, BMVC 2023) and the
//! Mixup family.
//!
//! The crate is built in layers; each module uses only the layers above it in this list (a test,
//! `tests/layers.rs`, keeps it so):
//!
//! | layer | holds |
//! |---|---|
//! | [`util`] | atomic writes, host name, float bit patterns, number formatting, the matrix type |
//! | [`metrics`] | test metrics (accuracy, calibration, NLL, Brier) and their catalog |
//! | [`data`] | datasets, their sources (one file each), splits, preprocessing, augmentation, batches |
//! | [`mix`] | methods (mixer × label rule × target, presets), the mixing rule, the losses |
//! | [`nn`] | networks (catalog, MLP, conv nets, CPU kernels, the CUDA path), SGD, devices |
//! | [`spec`] | the experiment file: schema, checks, YAML errors, run identity and grid expansion |
//! | [`train`] | the training loop and step, evaluation, history, checkpoints, `icm bench` |
//! | [`grid`] | running a grid: claims and locks, run records, per-epoch history and progress, status, Slurm (feature `cli`) |
//! | [`report`] | collection, aggregation, tables, figures, HTML (feature `cli`) |
//!
//! The mathematics the code relies on is written down in `docs/` (methods, splits, metrics and
//! report conventions). With `default-features = false` the crate has the methods, losses,
//! metrics, data sources, networks and trainer without the command line's dependencies (polars,
//! plotters, clap); the embedded digits come with the `digits` feature.
//!
//! The mixing step and the losses work in any dfdx training loop:
//!
//! ```
//! use dfdx::prelude::*;
//! use icm::data::ImageShape;
//! use icm::mix::{mix_batch, target_loss, Method, MethodEntry};
//! use rand::SeedableRng;
//!
//! // `icm-mixup` with α = 0.4: Mixup inputs, ICM loss on both axes.
//! let entry: MethodEntry = serde_yaml::from_str("icm-mixup: {alpha: 0.4}").unwrap();
//! let method: Method = entry.resolve().unwrap();
//!
//! // A batch of four 1×2×2 images of 3 classes.
//! let shape = ImageShape { channels: 1, height: 2, width: 2 };
//! let x: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
//! let labels = [0, 1, 2, 1];
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mixed = mix_batch(&method, &x, &labels, shape, 3, &[10, 10, 10], &mut rng);
//!
//! // Your network goes here; a linear map stands in for it.
//! let dev = Cpu::default();
//! let w: Tensor<(usize, usize), f32, _> = dev.sample_normal_like(&(4, 3));
//! let inputs: Tensor<(usize, usize), f32, _> = dev.tensor_from_vec(mixed.inputs, (4, 4));
//! let targets = dev.tensor_from_vec(mixed.targets, (4, 3));
//! let logits = inputs.leaky_trace().matmul(w.clone());
//! let loss = target_loss(&method, logits, targets).unwrap();
//! let grads = loss.backward();
//! assert_eq!(grads.get(&w).as_vec().len(), 12);
//! ```

pub mod util;

pub mod metrics;

pub mod data;

pub mod mix;

pub mod nn;

pub mod spec;

pub mod train;

#[cfg(feature = "cli")]
pub mod grid;

#[cfg(feature = "cli")]
pub mod report;
