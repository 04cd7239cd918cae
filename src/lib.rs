//! `icm`: an experiment harness for Infinite Class Mixup (Mensink & Mettes, BMVC 2023) and the
//! Mixup family. A YAML grid ([`config`]) expands into runs, each trained by [`train`] with a
//! method ([`method`]: mixer × label rule × target) whose mixing lives in [`mixing`] and whose
//! losses live in [`losses`]; [`metrics`] computes accuracy and calibration, [`records`] stores
//! each run, and [`report`] / [`plots`] turn a results folder into tables and diagrams.

pub mod bench;
pub mod config;
pub mod data;
pub mod losses;
pub mod method;
pub mod metrics;
pub mod mixing;
pub mod model;
pub mod optim;
pub mod plots;
pub mod records;
pub mod report;
pub mod runner;
pub mod splits;
pub mod train;
