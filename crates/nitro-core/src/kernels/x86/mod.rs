//! Every x86-64 intrinsic of the crate, one file per instruction set. Each function here is
//! `unsafe` only because it needs its instruction set: callers check [`super::cpu::Isa`]
//! detection first. Every kernel reproduces the portable kernel's integers exactly (tested
//! against the `i64` oracle on every machine that has the instructions, and self-checked at
//! first use, see [`super::gemm`]).

pub(crate) mod amx;
pub(crate) mod avx2;
// AVX-512 and AVX-VNNI intrinsics are Rust 1.89+; this module is compiled only by such a
// compiler (crates/nitro-core/build.rs), so clippy may hold these two files to 1.89.
#[clippy::msrv = "1.89"]
pub(crate) mod avx512;
#[clippy::msrv = "1.89"]
pub(crate) mod avxvnni;
