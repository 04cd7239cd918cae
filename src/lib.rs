//! `icm`: an experiment harness for Infinite Class Mixup (Mensink & Mettes, BMVC 2023) and the
//! Mixup family. A YAML grid ([`config`]) expands into runs, each trained by [`train`] with a
//! method ([`method`]: mixer × label rule × target) whose mixing lives in [`mixing`] and whose
//! losses live in [`losses`]; [`metrics`] computes accuracy and calibration, [`records`] stores
//! each run, and [`report`] / [`plots`] turn a results folder into tables and diagrams.
//!
//! The mixing step and the losses work in any dfdx training loop:
//!
//! ```
//! use dfdx::prelude::*;
//! use icm::losses::target_loss;
//! use icm::method::{Method, MethodEntry};
//! use icm::mixing::{mix_batch, ImageShape};
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

pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod cifar;
pub mod claims;
pub mod composed;
pub mod config;
pub mod convnet;
pub mod data;
pub mod device;
pub mod folder;
pub mod idx;
pub mod losses;
pub mod method;
pub mod metrics;
pub mod mixing;
pub mod model;
pub mod native;
pub mod ops;
pub mod optim;
pub mod plots;
pub mod records;
pub mod report;
pub mod runner;
pub mod slurm;
pub mod splits;
pub mod train;
