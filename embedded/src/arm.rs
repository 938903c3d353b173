//! Cortex-M under QEMU's MPS2 boards (mps2-an385: Cortex-M3, also running the ARMv6-M build;
//! mps2-an386: Cortex-M4F): the semihosting trap and host stream, a halt, and an instruction
//! counter (what `semihosting.rs` builds on is all that differs between the targets).

pub use cortex_m_semihosting::hio::{hstdout, HostStream};
pub use cortex_m_semihosting::syscall1;

/// Stop for good (after the exit call, which QEMU does not return from).
pub fn halt() -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
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
