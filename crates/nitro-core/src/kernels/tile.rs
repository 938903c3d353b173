//! The micro-tile contract shared by the pair engine ([`super::gemm`]) and the instruction-set
//! kernels ([`super::x86`]): the panel widths of packed operands, where a tile of C lies, and
//! the portable epilogue that stores or adds a tile's `i32` sums into the `i64` result. A leaf,
//! so that the engine can call the kernels and the kernels can name the tile.

/// Rows of an A panel: rows of C per micro-tile.
pub(crate) const MR: usize = 6;
/// Rows of a B panel: columns of C per panel (sixteen `i32` lanes).
pub(crate) const NR: usize = 16;

/// Where a micro-tile lies in C: row stride, live rows and columns, and whether this is the
/// first K block (store) or a later one (add).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    /// Row stride of C.
    pub(crate) ldc: usize,
    /// Live rows (≤ [`MR`]).
    pub(crate) rows: usize,
    /// Live columns (≤ `NR·P`).
    pub(crate) cols: usize,
    /// First K block: store instead of add.
    pub(crate) first: bool,
}

/// Write (first K block) or add an `MR×NR` block of `i32` sums into the live part of C.
pub(crate) fn store_tile(acc: &[[i32; NR]; MR], c: &mut [i64], t: Tile) {
    for (r, accr) in acc.iter().enumerate().take(t.rows) {
        let crow = &mut c[r * t.ldc..r * t.ldc + t.cols.min(NR)];
        for (cv, &s) in crow.iter_mut().zip(accr) {
            *cv = if t.first { 0 } else { *cv } + i64::from(s);
        }
    }
}
