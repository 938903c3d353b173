//! Every x86-64 intrinsic of the crate, one file per instruction set. Each function here is
//! `unsafe` only because it needs its instruction set: callers check [`super::cpu::Isa`]
//! detection first. Every kernel reproduces the portable kernel's integers exactly (tested
//! against the `i64` oracle on every machine that has the instructions, and self-checked at
//! first use, see [`super::gemm`]).

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod avxvnni;
