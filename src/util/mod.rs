//! The bottom layer: small helpers every other layer may use and that use nothing of the crate.

pub mod bits;
pub mod fault;
pub mod files;
pub mod host;
pub mod json;
pub mod npy;
pub mod params;
pub mod simd;
pub mod tensor;
pub mod text;

pub use fault::fault_point;
pub use files::{temp_beside, write_atomic};
pub use host::{available_memory, host_name, process_alive};
pub use params::NoParameters;
pub use tensor::Matrix;
pub use text::{file_safe, fmt_num};
