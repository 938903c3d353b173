//! What the processor offers and which of it the kernels may use: the instruction sets the
//! kernels have paths for ([`Isa`]), their run-time detection, the process-wide [`Dispatch`]
//! that tests and benchmarks force, and the [`Int`] element trait. A leaf: it imports nothing
//! else of the crate but the error type.
//!
//! Every path computes the same integers (each is tested against an `i64` oracle and checks
//! itself at first use, see [`super::gemm`]); a path only changes speed.

use core::sync::atomic::{AtomicU8, Ordering};

/// Integer element types accepted by the kernels (all fit in `i32`).
pub trait Int: Copy + Send + Sync + Into<i64> + Into<i32> + 'static {
    /// The largest magnitude a value of the type can have (`|MIN|`).
    const BOUND: u64;
    /// The values as bytes, where the type is `i8` (for kernels written for bytes).
    fn bytes(_values: &[Self]) -> Option<&[i8]> {
        None
    }
    /// [`Int::bytes`] for outputs.
    fn bytes_mut(_values: &mut [Self]) -> Option<&mut [i8]> {
        None
    }
}
impl Int for i8 {
    const BOUND: u64 = 128;
    fn bytes(values: &[i8]) -> Option<&[i8]> {
        Some(values)
    }
    fn bytes_mut(values: &mut [i8]) -> Option<&mut [i8]> {
        Some(values)
    }
}
impl Int for i16 {
    const BOUND: u64 = 32_768;
}
impl Int for i32 {
    const BOUND: u64 = 1 << 31;
}

/// An instruction set the kernels have a path for, from the least to the most capable.
///
/// [`Isa::AvxVnni`] and [`Isa::Avx512Vnni`] are independent extensions (an AMD Zen 4 has the
/// second without the first); the order only ranks the paths by speed for [`Dispatch::isa`].
/// [`Isa::Amx`] is a separate engine (tiles of signed 8-bit digits, [`super::gemm`]); the pair
/// engine's micro-kernels stop at [`Isa::Avx512Vnni`], which a cap of `Amx` also allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, any target.
    Portable,
    /// x86-64 AVX2: `vpmaddwd` + `vpaddd` on 256-bit vectors.
    Avx2,
    /// x86-64 AVX-VNNI (VEX): `vpdpwssd` on 256-bit vectors.
    AvxVnni,
    /// x86-64 AVX-512 VNNI: `vpdpwssd` on 512-bit vectors.
    Avx512Vnni,
    /// x86-64 AMX-INT8: `tdpbssd` on 16×64-byte tiles of signed 8-bit digits (Linux only: the
    /// tile state needs the kernel's permission, asked for once at detection).
    Amx,
}

impl Isa {
    /// Every path, least capable first.
    pub const ALL: [Isa; 5] = [
        Isa::Portable,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512Vnni,
        Isa::Amx,
    ];

    /// The feature names as `/proc/cpuinfo` spells them (for messages and skips).
    pub fn cpu_flags(self) -> &'static str {
        match self {
            Isa::Portable => "none",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx_vnni",
            Isa::Avx512Vnni => "avx512f+avx512bw+avx512_vnni",
            Isa::Amx => "amx_tile+amx_int8 with avx512f+avx512bw+avx512_vnni (and Linux's permission for the tile state)",
        }
    }

    /// Whether this processor (and operating system) can run the path. Without `std` only what
    /// the build enables at compile time counts (no run-time detection there).
    pub fn detected(self) -> bool {
        let bit = 1u8 << (self as u8);
        let mut found = DETECTED.load(Ordering::Relaxed);
        if found == 0 {
            found = detect();
            DETECTED.store(found, Ordering::Relaxed);
        }
        found & bit != 0
    }

    /// The most capable detected path.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.detected())
            .unwrap_or(Isa::Portable)
    }
}

impl core::fmt::Display for Isa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Amx => "amx",
        })
    }
}

impl core::str::FromStr for Isa {
    type Err = crate::error::Error;

    /// The names [`Isa`]'s `Display` writes (`portable`, `avx2`, `avx-vnni`, `avx512-vnni`, `amx`).
    fn from_str(s: &str) -> Result<Isa, Self::Err> {
        Isa::ALL
            .into_iter()
            .find(|i| alloc::format!("{i}") == s)
            .ok_or_else(|| {
                crate::error::Error::config(alloc::format!(
                    "unknown instruction set {s:?}: use portable, avx2, avx-vnni, avx512-vnni or amx"
                ))
            })
    }
}

/// Detected paths as bits `1 << isa` (0: not yet detected; `Portable` is always set).
static DETECTED: AtomicU8 = AtomicU8::new(0);

fn detect() -> u8 {
    let portable = 1u8 << (Isa::Portable as u8);
    #[cfg(nitro_x86_simd)]
    {
        let mut bits = portable;
        if x86::avx2() {
            bits |= 1 << (Isa::Avx2 as u8);
        }
        if x86::avx2() && x86::avx_vnni() {
            bits |= 1 << (Isa::AvxVnni as u8);
        }
        if x86::avx512_vnni() {
            bits |= 1 << (Isa::Avx512Vnni as u8);
        }
        // The tile engine's packing and epilogue are compiled for AVX-512 F and BW, which
        // every AMX processor has; a guest shown AMX without them gets no tiles.
        if x86::avx512_vnni() && crate::kernels::x86::amx::available() {
            bits |= 1 << (Isa::Amx as u8);
        }
        bits
    }
    #[cfg(not(nitro_x86_simd))]
    portable
}

#[cfg(nitro_x86_simd)]
mod x86 {
    #[cfg(feature = "std")]
    pub(super) fn avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(feature = "std"))]
    pub(super) fn avx2() -> bool {
        cfg!(target_feature = "avx2")
    }

    #[cfg(feature = "std")]
    pub(super) fn avx_vnni() -> bool {
        std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(feature = "std"))]
    pub(super) fn avx_vnni() -> bool {
        cfg!(target_feature = "avxvnni")
    }

    #[cfg(feature = "std")]
    pub(super) fn avx512_vnni() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(feature = "std"))]
    pub(super) fn avx512_vnni() -> bool {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vnni"
        ))
    }
}

/// Whether the CPU has AVX-512 VBMI (with F, BW and VL): the byte permutes of the table
/// lookup (`kernels::lookup`) and of the byte transpose (`kernels::channels_last`), which the
/// VNNI build does not imply.
#[cfg(nitro_x86_simd)]
pub(crate) fn avx512_vbmi() -> bool {
    #[cfg(feature = "std")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vbmi",
            target_feature = "avx512vl"
        ))
    }
}

/// Which kernels a product may use. The default allows everything; tests force each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Pack operands as `i16` when both fit (|v| ≤ 32767): twice the throughput per instruction.
    pub allow_i16: bool,
    /// The most capable instruction set allowed. A product runs on the most capable detected
    /// (and self-checked) path that is not above it; [`Isa::Portable`] forbids explicit SIMD.
    pub isa: Isa,
}

impl Dispatch {
    /// Everything allowed.
    pub const DEFAULT: Dispatch = Dispatch {
        allow_i16: true,
        isa: Isa::Amx,
    };

    /// A dispatch that allows `i16` packing (or not) and at most `isa`.
    pub const fn new(allow_i16: bool, isa: Isa) -> Dispatch {
        Dispatch { allow_i16, isa }
    }

    /// Every combination a test should cover on this machine: `i16` packing on/off × each
    /// detected instruction set (undetected ones would only repeat a lower path).
    pub fn all_detected() -> alloc::vec::Vec<Dispatch> {
        let mut out = alloc::vec::Vec::new();
        for allow_i16 in [true, false] {
            for isa in Isa::ALL {
                if isa.detected() {
                    out.push(Dispatch { allow_i16, isa });
                }
            }
        }
        out
    }

    /// Whether explicit SIMD of at least AVX2 may run (the packing and update loops use it).
    pub fn avx2(self) -> bool {
        self.isa >= Isa::Avx2 && Isa::Avx2.detected()
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch::DEFAULT
    }
}

/// Which build of the plain (auto-vectorised) loops — packing, magnitude scans, the IntegerSGD
/// update — runs under the current dispatch: `Avx512Vnni` stands for "AVX-512 F+BW allowed and
/// detected" (its detection includes them), then `Avx2`, else `Portable`. Every build is the
/// same safe code compiled for another target, so all compute the same integers.
#[cfg_attr(not(nitro_x86_simd), allow(dead_code))]
pub(crate) fn loop_build() -> Isa {
    let d = dispatch();
    if d.isa >= Isa::Avx512Vnni && Isa::Avx512Vnni.detected() {
        Isa::Avx512Vnni
    } else if d.avx2() {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

/// The dispatch used by every product and update: [`Dispatch::default`] unless changed with
/// [`set_dispatch`].
pub fn dispatch() -> Dispatch {
    let v = DISPATCH.load(Ordering::Relaxed);
    Dispatch {
        allow_i16: v & 0x80 == 0,
        isa: Isa::ALL[usize::from(v & 0x7f).min(Isa::ALL.len() - 1)],
    }
}

/// Restrict the kernels every layer uses, process-wide — for tests that compare whole training
/// runs across kernel paths (results are identical on every path; only speed differs).
pub fn set_dispatch(d: Dispatch) {
    DISPATCH.store(encode(d), Ordering::Relaxed);
}

/// The environment variable the examples and benchmarks read to cap the kernels' instruction
/// set (`portable`, `avx2`, `avx-vnni`, `avx512-vnni`, `amx`).
pub const ISA_ENV: &str = "NITROD_ISA";

/// Cap the dispatch at the instruction set [`ISA_ENV`] names, when it is set: the cap, or
/// `None` when unset; a name that is no instruction set is an error (nothing changed).
#[cfg(feature = "std")]
pub fn cap_from_env() -> crate::error::Result<Option<Isa>> {
    let Ok(name) = std::env::var(ISA_ENV) else {
        return Ok(None);
    };
    let isa: Isa = name.parse().map_err(|e| match e {
        crate::error::Error::Config(m) => {
            crate::error::Error::config(alloc::format!("{ISA_ENV}: {m}"))
        }
        o => o,
    })?;
    set_dispatch(Dispatch::new(true, isa));
    Ok(Some(isa))
}

const fn encode(d: Dispatch) -> u8 {
    (if d.allow_i16 { 0 } else { 0x80 }) | d.isa as u8
}

/// The process-wide dispatch: bit 7 set = no `i16` packing; bits 0–6 = the `Isa` cap.
static DISPATCH: AtomicU8 = AtomicU8::new(encode(Dispatch::DEFAULT));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_round_trips_and_portable_is_always_there() {
        assert!(Isa::Portable.detected());
        for d in Dispatch::all_detected() {
            assert_eq!(dispatch_after(d), d);
        }
        assert!(Isa::best().detected());
        assert_eq!(encode(Dispatch::DEFAULT), Isa::Amx as u8);
        set_dispatch(Dispatch::DEFAULT);
    }

    /// `NITROD_ISA`: unset is no cap, a name that is no instruction set an error naming the
    /// variable and the value, a name the cap. (`amx` is the default cap, so the other tests
    /// running meanwhile see no change; for the same reason the dispatch itself is not read.)
    #[cfg(feature = "std")]
    #[test]
    fn the_isa_cap_comes_from_the_environment() {
        // No other test reads or writes this variable.
        std::env::remove_var(ISA_ENV);
        assert_eq!(cap_from_env().unwrap(), None);
        std::env::set_var(ISA_ENV, "avx3");
        let e = cap_from_env().unwrap_err().to_string();
        assert!(e.contains("NITROD_ISA") && e.contains("avx3"), "{e}");
        std::env::set_var(ISA_ENV, "amx");
        assert_eq!(cap_from_env().unwrap(), Some(Isa::Amx));
        std::env::remove_var(ISA_ENV);
    }

    fn dispatch_after(d: Dispatch) -> Dispatch {
        let v = encode(d);
        Dispatch {
            allow_i16: v & 0x80 == 0,
            isa: Isa::ALL[usize::from(v & 0x7f)],
        }
    }
}
