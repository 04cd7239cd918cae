//! Fault injection for the crash tests.

/// When the environment variable `ICM_FAULT` equals `point`, the process aborts right there (like
/// a kill, no clean-up).
pub fn fault_point(point: &str) {
    if std::env::var("ICM_FAULT").is_ok_and(|v| v == point) {
        eprintln!("ICM_FAULT={point}: aborting");
        std::process::abort();
    }
}
