// Put the target's memory map where the linker script (cortex-m-rt's or riscv-rt's link.x)
// includes it as `memory.x`, and tell the firmware which target it was built for.
use std::{env, fs, path::PathBuf};
fn main() {
    let target = env::var("TARGET").unwrap();
    let map = if target.starts_with("riscv32") {
        "memory/riscv32.x"
    } else {
        "memory/cortex-m.x"
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::write(out.join("memory.x"), fs::read(map).unwrap()).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-env=FIRMWARE_TARGET={target}");
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rerun-if-changed=build.rs");
}
