//! The numeric kernels every prediction runs: the network's forward pass (`forward.rs`), and
//! standardization of a numeric column and `exp` for softmax (`math.rs`). Each kernel has one
//! portable form and, where the processor has the instructions, a fast form with the same
//! operations in the same order, so that one artifact gives the same bits on every machine.
//!
//! This is the only module of the product crates with `unsafe` code: calling functions compiled
//! for AVX2/FMA/AVX after checking the processor has them, and the vector loads and stores of
//! the AVX2 forward pass. `serving` and `trainer` forbid `unsafe`; the crate root denies it
//! everywhere else (ARCHITECTURE.md, invariant 5).

#![allow(unsafe_code)]

mod forward;
mod math;

pub use forward::{KernelLayer, Network, NetworkError};
pub use math::smooth_clip;
pub(crate) use math::{Scaling, exp_in_place, standardize, standardize_column};

/// Which form of the kernels runs on this processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// x86-64 with AVX2 and FMA: 16 rows across two 8-lane vectors.
    Avx2Fma,
    /// Any processor: the same operations, one value at a time.
    Portable,
}

impl Route {
    /// The fastest route this processor can run.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Route::Avx2Fma;
        }
        Route::Portable
    }
}
