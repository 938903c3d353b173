//! What the firmware asks of the host through semihosting (the Arm specification, which
//! RISC-V adopts unchanged): the console, the exit status, the clock. The trap instruction and
//! the host-stream type come from the target's `platform` module.

use crate::platform::{halt, hstdout, syscall1, HostStream};

/// The semihosting console (SYS_WRITE0 is slow; whole strings go to the host's stdout).
pub struct Console(HostStream);

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.write_all(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

pub fn console() -> Console {
    Console(hstdout().unwrap_or_else(|_| exit(3)))
}

/// SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `code`.
pub fn exit(code: u32) -> ! {
    let block: [u32; 2] = [0x20026, code];
    unsafe { syscall1(0x20, block.as_ptr() as usize) };
    halt()
}

/// SYS_CLOCK: centiseconds since the program started (host time under QEMU).
pub fn centis() -> u32 {
    unsafe { syscall1(0x10, 0) as u32 }
}
