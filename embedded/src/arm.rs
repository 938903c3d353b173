//! Cortex-M under QEMU's MPS2 boards (mps2-an385: Cortex-M3, also running the ARMv6-M build;
//! mps2-an386: Cortex-M4F): the semihosting console and exit, the host clock, and an
//! instruction counter.

use cortex_m_semihosting::hio;

/// The semihosting console (SYS_WRITE0 is slow; whole strings go to the host's stdout).
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
    unsafe { cortex_m_semihosting::syscall1(0x20, block.as_ptr() as usize) };
    loop {
        cortex_m::asm::bkpt();
    }
}

/// SYS_CLOCK: centiseconds since the program started (host time under QEMU).
pub fn centis() -> u32 {
    unsafe { cortex_m_semihosting::syscall1(0x10, 0) as u32 }
}

/// The MPS2 boards' CMSDK APB timer 0 (CTRL, VALUE, RELOAD), clocked at the 25 MHz SYSCLK.
const TIMER0: usize = 0x4000_0000;
/// Instructions per timer tick under `qemu -icount shift=0` (one instruction per virtual ns):
/// 1 ns per instruction × 40 ns per 25 MHz tick.
const INSNS_PER_TICK: u64 = 40;

/// Start the free-running counter behind [`instructions`].
pub fn start_counter() {
    unsafe {
        core::ptr::write_volatile((TIMER0 + 0x8) as *mut u32, u32::MAX); // RELOAD
        core::ptr::write_volatile((TIMER0 + 0x4) as *mut u32, u32::MAX); // VALUE
        core::ptr::write_volatile(TIMER0 as *mut u32, 1); // CTRL: enable
    }
}

/// Instructions executed since [`start_counter`], to ±40, when QEMU runs with `-icount
/// shift=0` (without it the timer follows host time and the number means nothing). The 32-bit
/// down-counter wraps after 2³² ticks = 171·10⁹ instructions, far beyond a run.
pub fn instructions() -> u64 {
    let value = unsafe { core::ptr::read_volatile((TIMER0 + 0x4) as *const u32) };
    u64::from(u32::MAX - value) * INSNS_PER_TICK
}

/// A loop of exactly `2·n` instructions (`subs`, `bne`; ARMv6-M has both), for checking the
/// counter: [`instructions`] around it should read `2·n` plus a few.
pub fn known_loop(n: u32) {
    unsafe {
        // r0: a low register, as the 16-bit `subs` of ARMv6-M needs.
        core::arch::asm!("2:", "subs r0, #1", "bne 2b", inout("r0") n => _, options(nomem, nostack));
    }
}
