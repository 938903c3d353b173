//! AMX-INT8 kernels: the tile engine's 2×2 tile product with `tdpbssd`, in `asm!` (stable Rust
//! has no AMX intrinsics), its tile configuration, and the run-time check that the processor
//! has AMX and that Linux lets this process use the tile state.
//!
//! The eight tile registers are used the same way by every product: `tmm0`–`tmm3` hold the four
//! `16×16` `i32` accumulators, `tmm4`/`tmm5` two A tiles (16 rows × 64 signed bytes) and
//! `tmm6`/`tmm7` two B tiles (16 quads × 16 columns × 4 signed bytes, the layout `tdpbssd`
//! reads its second source in). Per K chunk of 64 bytes: four loads, four `tdpbssd`, each of
//! which adds `Σ_t a[r][4q+t]·b[q][4c+t]` over the chunk to every accumulator entry, exactly
//! (no saturation; the caller proves that the sums fit `i32`).

use core::arch::asm;

/// Bytes of one tile (16 rows of 64 bytes).
pub(crate) const TILE_BYTES: usize = 1024;
/// Row stride of every tile in memory.
const STRIDE: usize = 64;

/// The `ldtilecfg` operand: palette 1, all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

const CONFIG: Config = {
    let mut c = [0u8; 64];
    c[0] = 1; // palette 1
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = STRIDE as u8; // bytes per row (u16, little endian)
        c[48 + t] = 16; // rows
        t += 1;
    }
    Config(c)
};

/// Whether this CPU has AMX-TILE and AMX-INT8, the operating system saves the tile state
/// (XCR0 bits 17 and 18) and, on Linux, this process has been granted the tile data
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked for here once; the grant is
/// process-wide). Elsewhere (and without `std`) AMX is never used.
pub(crate) fn available() -> bool {
    #[cfg(all(feature = "std", target_os = "linux"))]
    {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        // SAFETY: CPUID exists on every x86-64 processor (the intrinsics are safe functions
        // from Rust 1.94 on, `unsafe` before).
        #[allow(unused_unsafe)]
        let (leaf1, leaf7) = unsafe { (__cpuid(1), __cpuid_count(7, 0)) };
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let tile = leaf7.edx & (1 << 24) != 0;
        let int8 = leaf7.edx & (1 << 25) != 0;
        // SAFETY: XGETBV is available when OSXSAVE is set (checked first).
        let xcr0 = osxsave && tile && int8 && unsafe { xgetbv0() } & (0b11 << 17) == 0b11 << 17;
        xcr0 && request_permission()
    }
    #[cfg(not(all(feature = "std", target_os = "linux")))]
    false
}

/// XCR0, the state components the operating system saves.
///
/// # Safety
/// The CPU must have XSAVE enabled by the OS (CPUID.1:ECX.OSXSAVE).
#[cfg(all(feature = "std", target_os = "linux"))]
unsafe fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller checked OSXSAVE; XGETBV with ECX = 0 reads XCR0 and touches no memory.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Ask Linux for the AMX tile data state; `true` when granted (kernels before 5.16 do not know
/// the request and answer an error, which leaves AMX unused).
#[cfg(all(feature = "std", target_os = "linux"))]
fn request_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, 18) reads and writes no user memory; the
    // syscall instruction clobbers rcx and r11, declared here.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

/// Load the tile configuration on this thread (before any other function of this module).
///
/// # Safety
/// [`available`] must have returned `true` in this process.
pub(crate) unsafe fn configure() {
    // SAFETY: CONFIG is 64 aligned bytes; the caller checked AMX and its permission.
    unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
}

/// Return the tile state to its initial (unused) form, so that context switches stop saving it.
///
/// # Safety
/// As [`configure`].
pub(crate) unsafe fn release() {
    // SAFETY: the caller checked AMX.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// The four `16×16` sums `out[2i + j] = A_i · B_jᵀ` over `chunks` consecutive K chunks: tile
/// `c` of operand `x` starts at `x + c·`[`TILE_BYTES`]. `out` is row-major, 16 `i32` per row.
///
/// # Safety
/// [`configure`] has run on this thread; each of `a[0]`, `a[1]`, `b[0]`, `b[1]` points to
/// `chunks·`[`TILE_BYTES`] readable bytes; `out` to `4·256` writable `i32`; `chunks ≥ 1`; every
/// sum fits `i32` (the caller's proof).
pub(crate) unsafe fn dot_2x2(a: [*const i8; 2], b: [*const i8; 2], chunks: usize, out: *mut i32) {
    debug_assert!(chunks >= 1);
    // SAFETY: the caller's contract; the loop reads exactly `chunks` tiles from each pointer
    // and the stores write 4 KiB at `out`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tileloadd tmm6, [{b0} + {s}*1]",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbssd tmm0, tmm4, tmm6",
            "tdpbssd tmm1, tmm4, tmm7",
            "tdpbssd tmm2, tmm5, tmm6",
            "tdpbssd tmm3, tmm5, tmm7",
            "add {a0}, 1024",
            "add {a1}, 1024",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {n}",
            "jnz 2b",
            "tilestored [{out} + {s}*1], tmm0",
            "tilestored [{out} + {s}*1 + 1024], tmm1",
            "tilestored [{out} + {s}*1 + 2048], tmm2",
            "tilestored [{out} + {s}*1 + 3072], tmm3",
            a0 = inout(reg) a[0] => _,
            a1 = inout(reg) a[1] => _,
            b0 = inout(reg) b[0] => _,
            b1 = inout(reg) b[1] => _,
            n = inout(reg) chunks => _,
            out = in(reg) out,
            s = in(reg) STRIDE,
            options(nostack)
        );
    }
}

/// The three sums `out[d] = A_d · Bᵀ` (`16×16` `i32` tiles, row-major, 1 KiB apart) of the
/// digits `A_0, A_1, A_2` of one row block with one B tile per K chunk, over `chunks` chunks:
/// the three A tiles of chunk `c` are consecutive at `a + (3c + d)·`[`TILE_BYTES`], the B tile
/// at `b + c·`[`TILE_BYTES`]. `tmm0`–`tmm2` accumulate, `tmm4`–`tmm6` hold the A tiles and
/// `tmm7` the B tile (a weight gradient's error of three digits against its one-digit input,
/// `gemm::tiles_each`).
///
/// # Safety
/// [`configure`] has run on this thread; `a` points to `3·chunks` tiles and `b` to `chunks`
/// tiles of readable bytes, `out` to `3·256` writable `i32`; `chunks ≥ 1`; every sum fits
/// `i32` (the caller's proof).
pub(crate) unsafe fn dot_digits3(a: *const i8, b: *const i8, chunks: usize, out: *mut i32) {
    debug_assert!(chunks >= 1);
    // SAFETY: the caller's contract; the loop reads exactly `chunks` tiles of B and
    // `3·chunks` of A, and the stores write 3 KiB at `out`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "2:",
            "tileloadd tmm7, [{b} + {s}*1]",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm5, [{a} + {s}*1 + 1024]",
            "tileloadd tmm6, [{a} + {s}*1 + 2048]",
            "tdpbssd tmm0, tmm4, tmm7",
            "tdpbssd tmm1, tmm5, tmm7",
            "tdpbssd tmm2, tmm6, tmm7",
            "add {a}, 3072",
            "add {b}, 1024",
            "dec {n}",
            "jnz 2b",
            "tilestored [{out} + {s}*1], tmm0",
            "tilestored [{out} + {s}*1 + 1024], tmm1",
            "tilestored [{out} + {s}*1 + 2048], tmm2",
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            n = inout(reg) chunks => _,
            out = in(reg) out,
            s = in(reg) STRIDE,
            options(nostack)
        );
    }
}

/// One row of a B tile from four consecutive K rows of sixteen values each (all within
/// `[−128, 127]`): `out[4l + s] = rows[s][l]` — the four rows' bytes interleaved, `tdpbssd`'s
/// layout for its second source. SSE2 only (every x86-64 has it): the values narrowed exactly
/// by `packsswb` (no value saturates), then interleaved by byte and by 16-bit word.
pub(crate) fn quad_row(rows: &[[i16; 16]; 4], out: &mut [i8; 64]) {
    use core::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86-64; every load reads 16 bytes of a 32-byte row and every
    // store writes 16 of `out`'s 64 bytes.
    unsafe {
        let bytes: [__m128i; 4] = core::array::from_fn(|s| {
            let p = rows[s].as_ptr() as *const __m128i;
            _mm_packs_epi16(_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
        });
        let (lo01, hi01) = (
            _mm_unpacklo_epi8(bytes[0], bytes[1]),
            _mm_unpackhi_epi8(bytes[0], bytes[1]),
        );
        let (lo23, hi23) = (
            _mm_unpacklo_epi8(bytes[2], bytes[3]),
            _mm_unpackhi_epi8(bytes[2], bytes[3]),
        );
        let o = out.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(o, _mm_unpacklo_epi16(lo01, lo23));
        _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(lo01, lo23));
        _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(hi01, hi23));
        _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(hi01, hi23));
    }
}
