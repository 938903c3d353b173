//! The firmware's whole heap: a 256 KiB arena in `.bss` (the memory budget `embedded/README.md`
//! reports), with live and peak byte counters (requested sizes, not allocator overhead).
//! The counters sit in a critical section rather than atomics: ARMv6-M (Cortex-M0+) has no
//! atomic read-modify-write instructions.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::mem::MaybeUninit;
use critical_section::Mutex;
use embedded_alloc::LlffHeap;

/// Bytes of the arena.
pub const HEAP_SIZE: usize = 256 * 1024;
static mut ARENA: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];

struct Counting {
    heap: LlffHeap,
    /// (live, peak) bytes.
    bytes: Mutex<Cell<(usize, usize)>>,
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { self.heap.alloc(l) };
        if !p.is_null() {
            critical_section::with(|cs| {
                let c = self.bytes.borrow(cs);
                let (live, peak) = c.get();
                c.set((live + l.size(), peak.max(live + l.size())));
            });
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { self.heap.dealloc(p, l) };
        critical_section::with(|cs| {
            let c = self.bytes.borrow(cs);
            let (live, peak) = c.get();
            c.set((live - l.size(), peak));
        });
    }
}

#[global_allocator]
static HEAP: Counting = Counting {
    heap: LlffHeap::empty(),
    bytes: Mutex::new(Cell::new((0, 0))),
};

/// Hand the arena to the allocator (once, first thing in `main`).
pub fn init() {
    unsafe { HEAP.heap.init(&raw mut ARENA as usize, HEAP_SIZE) };
}

/// Bytes allocated now.
pub fn live() -> usize {
    critical_section::with(|cs| HEAP.bytes.borrow(cs).get().0)
}

/// The most bytes allocated at once since [`init`] or the last [`reset_peak`].
pub fn peak() -> usize {
    critical_section::with(|cs| HEAP.bytes.borrow(cs).get().1)
}

/// Start a new peak measurement from what is live now (each model's run reports its own).
pub fn reset_peak() {
    critical_section::with(|cs| {
        let c = HEAP.bytes.borrow(cs);
        let (live, _) = c.get();
        c.set((live, live));
    });
}
