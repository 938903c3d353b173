//! The embedded firmware's training runs (`embedded/src/app.rs`, included as is) on the host:
//! the same data files, models and settings, so `make embedded` can check that every target
//! ends with the host's weights, bit for bit (the `HASH` lines). The heap is counted like the
//! firmware's (requested bytes, less the data files, which the firmware keeps in flash); no
//! instruction counter here. Built without nitro-core's default features, the engine is the
//! firmware's (`no_std`: no buffer reuse, one thread), so the heap peaks match the device's to
//! within its narrower `usize`:
//!
//! It first trains the model the device fine-tunes (`app::pretrain`) and writes its device
//! blob to `<data dir>/pretrained.bin`, which the firmware embeds: run it before building.
//!
//! `cargo run --release -p nitro-core --no-default-features --example firmware_host -- embedded/data`

extern crate alloc;

#[path = "../../../embedded/src/app.rs"]
mod app;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator with the firmware's live/peak byte counters.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Bytes live once the data files are read: not part of the firmware's heap.
static BASE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// The firmware's arena size: the host reports against the same budget.
const HEAP_SIZE: usize = 256 * 1024;

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!(
            "error: cannot read {} ({e}); run `python3 embedded/gen_data.py` first",
            path.display()
        );
        std::process::exit(2)
    })
}

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "embedded/data".into()),
    );
    let (tx, ty, vx, vy) = (
        read(&dir, "train_x.bin"),
        read(&dir, "train_y.bin"),
        read(&dir, "test_x.bin"),
        read(&dir, "test_y.bin"),
    );
    // The model the device fine-tunes: trained here without the held-out classes, written
    // as the device blob that the firmware embeds.
    let mut data = app::Data {
        train: app::Split { x: &tx, y: &ty },
        test: app::Split { x: &vx, y: &vy },
        pretrained: &[],
    };
    let blob = app::pretrain(&data)
        .and_then(|m| nitro_core::export::to_blob(&m))
        .unwrap_or_else(|e| {
            eprintln!("error: pre-training failed: {e}");
            std::process::exit(2)
        });
    let path = dir.join("pretrained.bin");
    if let Err(e) = std::fs::write(&path, &blob) {
        eprintln!("error: cannot write {} ({e})", path.display());
        std::process::exit(2)
    }
    data.pretrained = &blob;
    BASE.store(LIVE.load(Relaxed), Relaxed);
    let start = std::time::Instant::now();
    let dev = app::Device {
        target: "host (x86-64, std)",
        heap_size: HEAP_SIZE,
        peak: || PEAK.load(Relaxed) - BASE.load(Relaxed),
        reset_peak: || PEAK.store(LIVE.load(Relaxed), Relaxed),
        live: || LIVE.load(Relaxed) - BASE.load(Relaxed),
        centis: || 0,
        instructions: || 0,
    };
    let mut out = String::new();
    let result = app::run(&mut out, &dev, &data);
    print!("{out}");
    eprintln!("host run: {:?}", start.elapsed());
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ERROR: {e}");
            std::process::exit(2)
        }
    }
}
