//! Exact integer kernels: the only place that knows about accumulator widths, SIMD and threads
//! (ARCHITECTURE.md). Layers describe products; kernels prove and compute them.

pub mod gemm;
pub mod im2col;
mod pack16;
pub(crate) mod pool;
pub mod sparse;

pub use pool::recycle;

pub use gemm::{
    dispatch, gemm_nn, gemm_nt, gemm_nt_rows, gemm_nt_with, gemm_rows_nt, gemm_tn, set_dispatch,
    Dispatch, Int, Path, RowSource,
};
