//! RISC-V rv32imac under QEMU's `virt` board in machine mode (`-bios none`): the semihosting
//! console and exit, the host clock, and the instruction counter.

use riscv_semihosting::hio;

/// The semihosting console (whole strings go to the host's stdout).
pub struct Console(hio::HostStream);

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.write_all(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

pub fn console() -> Console {
    Console(hio::hstdout().unwrap_or_else(|_| exit(3)))
}

/// SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `code`.
pub fn exit(code: u32) -> ! {
    let block: [u32; 2] = [0x20026, code];
    unsafe { riscv_semihosting::syscall1(0x20, block.as_ptr() as usize) };
    loop {
        riscv::asm::wfi();
    }
}

/// SYS_CLOCK: centiseconds since the program started (host time under QEMU).
pub fn centis() -> u32 {
    unsafe { riscv_semihosting::syscall1(0x10, 0) as u32 }
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
