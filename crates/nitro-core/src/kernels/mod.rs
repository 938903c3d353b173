//! Exact integer kernels: the only place that knows about accumulator widths, SIMD and threads
//! (ARCHITECTURE.md). Layers describe products; kernels prove and compute them.
//!
//! * [`cpu`] — instruction sets, their detection and the forceable [`Dispatch`] (a leaf).
//! * [`gemm`] — the bound proof and the two product engines; `x86` holds every intrinsic.
//! * [`im2col`] — convolutions lowered onto products, over [`channels_last`] padded inputs;
//!   [`nchw`] — their epilogue (bias, scaling, the transpose back to NCHW);
//!   [`sparse`] — the weight gradient of a sparse (max-pooled) error.
//! * `sgd` — the vectorised IntegerSGD update loops; `map` — the layers' element-wise maps.
//! * [`par`] — every parallel loop of the crate (`awake` keeps the pool polling through a
//!   step); `buffers` — reused product buffers.

#[cfg(feature = "parallel")]
mod awake;
pub(crate) mod buffers;
pub mod channels_last;
pub mod cpu;
pub mod filters;
pub mod gemm;
pub mod im2col;
pub(crate) mod lookup;
pub(crate) mod map;
pub(crate) mod maxpool;
pub mod nchw;
pub mod par;
#[cfg(nitro_x86_simd)]
pub(crate) mod self_check;
pub(crate) mod sgd;
pub mod sparse;
pub(crate) mod tile;
#[cfg(nitro_x86_simd)]
pub(crate) mod x86;

pub use buffers::{recycle, release as release_buffers};
#[cfg(feature = "std")]
pub use cpu::cap_from_env;
pub use cpu::{dispatch, set_dispatch, Dispatch, Int, Isa, ISA_ENV};
pub use gemm::{
    conv_rows_nt_nchw, engine_counts, gemm_nn, gemm_nt, gemm_nt_rows, gemm_nt_with, gemm_rows_nt,
    gemm_rows_nt_nchw, gemm_tn, Accum, EngineCounts, RowSource,
};
