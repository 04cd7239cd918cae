//! The SIMD level the CPU work runs at: chosen once per process, read by the matrix products
//! (`nn::products`, through the `gemm` crate) and by the element-wise loops ([`vectorised`]).
//!
//! The crate is built for baseline x86-64 (SSE2), so that one binary runs on every host; the
//! wider levels are picked at run time: AVX-512 where the CPU has `avx512f`, else AVX2 + FMA.
//! [`set_simd`] (from `icm … --simd`, or the `ICM_SIMD` environment variable) forces a lower
//! level, so that one AVX-512 host measures both the AVX-512 and the AVX2 path in one sitting; a
//! level the CPU lacks is refused.

use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{bail, Result};

/// A SIMD level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// The best level the CPU has.
    Auto,
    /// 512-bit vectors (x86-64-v4: `avx512f`, with `avx512bw/dq/vl`).
    Avx512,
    /// 256-bit AVX2 + FMA (x86-64-v3).
    Avx2,
}

const AUTO: u8 = 0;
const AVX512: u8 = 1;
const AVX2: u8 = 2;

static FORCED: AtomicU8 = AtomicU8::new(AUTO);

impl Simd {
    /// Parses `auto`, `avx512` or `avx2` (as `--simd` and `ICM_SIMD` take them).
    pub fn parse(text: &str) -> Result<Simd> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Simd::Auto),
            "avx512" | "avx-512" | "x86-v4" => Ok(Simd::Avx512),
            "avx2" | "x86-v3" => Ok(Simd::Avx2),
            other => bail!("unknown SIMD level `{other}`: use auto, avx512 or avx2"),
        }
    }
}

/// Whether this CPU has `level`.
pub fn cpu_has(level: Simd) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match level {
            Simd::Auto => true,
            Simd::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && cpu_has(Simd::Avx2)
            }
            Simd::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        level == Simd::Auto
    }
}

/// Forces the SIMD level of all later work; a level the CPU lacks is an error.
pub fn set_simd(level: Simd) -> Result<()> {
    if !cpu_has(level) {
        bail!("this CPU has no {level:?} (see the flags of `lscpu`): use --simd auto");
    }
    let code = match level {
        Simd::Auto => AUTO,
        Simd::Avx512 => AVX512,
        Simd::Avx2 => AVX2,
    };
    FORCED.store(code, Ordering::Relaxed);
    Ok(())
}

/// Applies `ICM_SIMD` when it is set (the command line calls this before any work).
pub fn set_simd_from_env() -> Result<()> {
    match std::env::var("ICM_SIMD") {
        Ok(text) => Simd::parse(&text)
            .and_then(set_simd)
            .map_err(|e| anyhow::anyhow!("ICM_SIMD={text}: {e}")),
        Err(_) => Ok(()),
    }
}

/// Whether AVX2 was forced (on a CPU that may have more).
pub fn avx2_forced() -> bool {
    FORCED.load(Ordering::Relaxed) == AVX2
}

/// The level work runs at now, in words (`AVX-512 (auto)`, `AVX2+FMA (forced)`, ...).
pub fn simd_in_use() -> String {
    match FORCED.load(Ordering::Relaxed) {
        AVX512 => "AVX-512 (forced)".into(),
        AVX2 => "AVX2+FMA (forced)".into(),
        _ if cpu_has(Simd::Avx512) => "AVX-512 (auto)".into(),
        _ if cpu_has(Simd::Avx2) => "AVX2+FMA (auto)".into(),
        _ => "scalar or non-x86 (auto)".into(),
    }
}

/// The level [`vectorised`] compiles for, decided once (the CPU does not change) and then
/// lowered only by a forced AVX2.
fn level_now() -> u8 {
    static DETECTED: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let detected = *DETECTED.get_or_init(|| {
        if cpu_has(Simd::Avx512) {
            AVX512
        } else if cpu_has(Simd::Avx2) {
            AVX2
        } else {
            AUTO
        }
    });
    if detected == AVX512 && avx2_forced() {
        AVX2
    } else {
        detected
    }
}

/// f32 values in one SIMD vector at the level in use (16 for AVX-512, 8 for AVX2, 4 below).
pub fn f32_lanes() -> usize {
    match level_now() {
        AVX512 => 16,
        AVX2 => 8,
        _ => 4,
    }
}

/// Runs `work` compiled for the level in use: the closure, marked `#[inline(always)]` (and so
/// every helper it calls), is inlined into a copy of this function built with that level's
/// target features, so plain element-wise loops in it become 256- or 512-bit vector code.
/// Without the mark a large closure stays a call to baseline code. The arithmetic is the one
/// written: Rust neither fuses a multiply and an add nor reorders a sum on its own, so the
/// results are the same bits at every level. Call it inside each parallel task (a rayon task
/// runs in rayon's code, not here).
#[inline(always)]
pub fn vectorised<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match level_now() {
            // SAFETY: `level_now` checked that the CPU has these features.
            AVX512 => unsafe { with_avx512(work) },
            AVX2 => unsafe { with_avx2(work) },
            _ => work(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        work()
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(work: impl FnOnce() -> R) -> R {
    work()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(work: impl FnOnce() -> R) -> R {
    work()
}
