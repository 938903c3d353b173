//! RISC-V rv32imac under QEMU's `virt` board in machine mode (`-bios none`): the semihosting
//! trap and host stream, a halt, and the instruction counter (what `semihosting.rs` builds on
//! is all that differs between the targets).

pub use riscv_semihosting::hio::{hstdout, HostStream};
pub use riscv_semihosting::syscall1;

/// Stop for good (after the exit call, which QEMU does not return from).
pub fn halt() -> ! {
    loop {
        riscv::asm::wfi();
    }
}

/// The `minstret` counter runs from reset: nothing to start.
pub fn start_counter() {}

/// Instructions retired (`minstret`). Under `qemu -icount` this is the exact count; without it
/// QEMU returns host ticks and the number means nothing.
pub fn instructions() -> u64 {
    riscv::register::minstret::read64()
}

/// A loop of exactly `2·n` instructions (`addi`, `bnez`), for checking the counter:
/// [`instructions`] around it should read `2·n` plus a few.
pub fn known_loop(n: u32) {
    unsafe {
        core::arch::asm!("2:", "addi {0}, {0}, -1", "bnez {0}, 2b", inout(reg) n => _, options(nomem, nostack));
    }
}
