//! Quick GEMM throughput probe: `gemm_speed M K N REPS [wide]` prints MACs per microsecond
//! (i.e. millions of multiply-adds per second) of the default dispatch, or of the instruction
//! set named by `NITROD_ISA` (portable, avx2, avx-vnni, avx512-vnni, amx).
use ndarray::Array2;
use nitro_core::kernels::gemm_nt;
use nitro_core::rng::Pcg32;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .take(4)
        .map(|s| s.parse().expect("number"))
        .collect();
    let wide = std::env::args().nth(5).is_some();
    let (m, k, n, reps) = (a[0], a[1], a[2], a[3]);
    nitro_core::kernels::cap_from_env().expect("NITROD_ISA names an instruction set");
    let mut r = Pcg32::new(1, 1);
    let x = Array2::from_shape_fn((m, k), |_| r.symmetric(127) as i8);
    let bound = if wide { 1 << 20 } else { 16_000 };
    let w = Array2::from_shape_fn((n, k), |_| r.symmetric(bound));
    let mut best = u128::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let c = gemm_nt(x.view(), w.view()).unwrap();
        std::hint::black_box(c);
        best = best.min(t.elapsed().as_nanos());
    }
    let macs = (m * k * n) as u128;
    println!(
        "{m}x{k}x{n}: best {} us, {} MMAC/s",
        best / 1000,
        macs * 1000 / best.max(1)
    );
}
