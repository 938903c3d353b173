//! Compiler-dependent parts of nitro-core, decided once here.
//!
//! The crate needs Rust 1.85 (its `rust-version`: Debian bookworm's `rustc-web` 1.85 builds the
//! embedded firmware). Two things need 1.89, and an older compiler leaves them out:
//! - `nitro_x86_simd`: the x86-64 SIMD kernels (`kernels::x86`) use AVX-512 and AVX-VNNI
//!   intrinsics and target features, stable since 1.89. Without them the portable kernels run,
//!   which give the same bits (every kernel path is tested against them).
//! - `nitro_file_lock`: `File::lock` for the atomic writes' temporary file (`io::file`).
//!   Without it writes go unlocked, as they do on a file system without locks.

fn main() {
    autocfg::emit_possibility("nitro_x86_simd");
    autocfg::emit_possibility("nitro_file_lock");
    println!("cargo:rerun-if-changed=build.rs");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    if autocfg::new().probe_rustc_version(1, 89) {
        autocfg::emit("nitro_file_lock");
        if x86_64 {
            autocfg::emit("nitro_x86_simd");
        }
    } else if x86_64 {
        println!(
            "cargo:warning=rustc older than 1.89: nitro-core's x86-64 SIMD kernels are left out \
             and the portable kernels are used (same results, slower); build with Rust 1.89+ for \
             the AVX2/AVX-512/VNNI paths"
        );
    }
}
