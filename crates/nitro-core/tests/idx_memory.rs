//! The IDX reader bounds what it allocates by the header's declared shape, checked against what
//! the file can hold: a gzip stream much longer than its header declares is refused without
//! decompressing it into memory. Measured with a counting allocator (this test binary only).

use nitro_core::data::idx::read_idx_u8;
use nitro_core::Error;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = NOW.fetch_add(l.size(), Ordering::SeqCst) + l.size();
        PEAK.fetch_max(n, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let n = NOW.fetch_add(new - l.size(), Ordering::SeqCst) + new - l.size();
            PEAK.fetch_max(n, Ordering::SeqCst);
        } else {
            NOW.fetch_sub(l.size() - new, Ordering::SeqCst);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn header(dims: &[u32]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// Bytes allocated at the peak of `f`, beyond what was allocated before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = NOW.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let t = f();
    (t, PEAK.load(Ordering::SeqCst) - base)
}

#[test]
fn memory_is_bounded_by_the_header_and_the_file() {
    let dir = std::env::temp_dir().join(format!("nitro-idx-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 10 bytes declared, 64 MiB of zeros behind them, compressed to ~64 KiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&header(&[10])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    drop(zeros);
    let bomb = dir.join("bomb.gz");
    std::fs::write(&bomb, gz.finish().unwrap()).unwrap();
    let (r, peak) = peak_of(|| read_idx_u8(&bomb));
    match r {
        Err(Error::Format(m)) => assert!(m.contains("bomb.gz") && m.contains("promises 10"), "{m}"),
        other => panic!("expected a format error, got {other:?}"),
    }
    assert!(
        peak < 4 << 20,
        "read {peak} bytes into memory for a 10-byte payload"
    );

    // A header promising more than a gzip file of its size can hold: refused up front.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&header(&[60_000, 1000, 1000])).unwrap();
    gz.write_all(&[7u8; 1000]).unwrap();
    let big = dir.join("big.gz");
    std::fs::write(&big, gz.finish().unwrap()).unwrap();
    let (r, peak) = peak_of(|| read_idx_u8(&big));
    match r {
        Err(Error::Format(m)) => assert!(m.contains("big.gz") && m.contains("can hold"), "{m}"),
        other => panic!("expected a format error, got {other:?}"),
    }
    assert!(peak < 1 << 20, "{peak} bytes");

    // The same for a raw file, and a valid file still reads.
    let mut raw = header(&[4_000_000, 28, 28]);
    raw.extend_from_slice(&[1u8; 100]);
    let raw_path = dir.join("raw");
    std::fs::write(&raw_path, &raw).unwrap();
    let (r, peak) = peak_of(|| read_idx_u8(&raw_path));
    assert!(
        matches!(r, Err(Error::Format(ref m)) if m.contains("raw")),
        "{r:?}"
    );
    assert!(peak < 1 << 20, "{peak} bytes");
    let mut ok = header(&[2, 3]);
    ok.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    std::fs::write(&raw_path, &ok).unwrap();
    assert_eq!(read_idx_u8(&raw_path).unwrap().data, vec![1, 2, 3, 4, 5, 6]);
    ok.push(9);
    std::fs::write(&raw_path, &ok).unwrap();
    assert!(matches!(read_idx_u8(&raw_path), Err(Error::Format(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
