//! The grid layer: running an experiment's grid ([`runner`]: claims, parallel runs, shards),
//! where each run stands ([`status`], [`locks`]: exclusive claims with heartbeats), the files of a
//! run ([`records`]; [`history_file`] keeps `history.csv` current epoch by epoch), progress lines
//! and bars ([`progress`]), clean-up of dead writers' temporary files ([`temporaries`]), Slurm
//! job arrays ([`slurm`]) and the run folders outside the current grid ([`inventory`]).

pub mod history_file;
pub mod inventory;
pub mod locks;
pub mod progress;
pub mod records;
pub mod runner;
pub mod slurm;
pub mod status;
pub mod temporaries;

pub use runner::{run_grid, GridSummary, RunOptions};
