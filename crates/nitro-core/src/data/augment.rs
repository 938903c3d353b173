//! Per-sample augmentation of algorithm.md §2: random crop after padding, random horizontal flip.

use crate::rng::Pcg32;

/// Per-sample augmentation (algorithm.md §2): random crop after padding by `pad` (pad value = the
/// image's minimum) and, when `flip` is set, random horizontal flip; each with probability ½.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Padding before the crop (MNIST/Fashion-MNIST 2, CIFAR-10 4).
    pub pad: usize,
    /// Whether horizontal flips are allowed (not for MNIST).
    pub flip: bool,
}

impl Augment {
    /// Augment one image `C×H×W` (flattened, row-major) in place.
    pub fn apply(&self, img: &mut [i8], c: usize, h: usize, w: usize, rng: &mut Pcg32) {
        debug_assert_eq!(img.len(), c * h * w);
        if self.pad > 0 && rng.coin() {
            let p = self.pad;
            let span = (2 * p + 1) as u32;
            let (dy, dx) = (rng.below(span) as usize, rng.below(span) as usize);
            let fill = img.iter().copied().min().unwrap_or(0);
            let src = img.to_vec();
            // Output (i, j) reads padded (i+dy, j+dx) = source (i+dy−p, j+dx−p).
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        let (si, sj) = ((i + dy).wrapping_sub(p), (j + dx).wrapping_sub(p));
                        img[(ch * h + i) * w + j] = if si < h && sj < w {
                            src[(ch * h + si) * w + sj]
                        } else {
                            fill
                        };
                    }
                }
            }
        }
        if self.flip && rng.coin() {
            for row in img.chunks_mut(w) {
                row.reverse();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_keeps_pixels_and_flips() {
        let aug = Augment { pad: 0, flip: true };
        let mut flipped = false;
        let mut r = Pcg32::new(0, 0);
        for _ in 0..20 {
            let mut img = [1i8, 2, 3, 4, 5, 6];
            aug.apply(&mut img, 1, 2, 3, &mut r);
            assert!(img == [1, 2, 3, 4, 5, 6] || img == [3, 2, 1, 6, 5, 4]);
            flipped |= img[0] == 3;
        }
        assert!(flipped);
        // Crop: every output pixel is either a source pixel at a consistent shift or the min.
        let crop = Augment {
            pad: 1,
            flip: false,
        };
        for _ in 0..20 {
            let mut img = [1i8, 2, 3, 4, 5, 6, 7, 8, 9];
            aug_check(&crop, &mut img, &mut r);
        }
    }

    fn aug_check(a: &Augment, img: &mut [i8; 9], r: &mut Pcg32) {
        let src = *img;
        a.apply(img, 1, 3, 3, r);
        let ok = (-1i32..=1).any(|dy| {
            (-1i32..=1).any(|dx| {
                (0..3).all(|i: i32| {
                    (0..3).all(|j: i32| {
                        let (si, sj) = (i + dy, j + dx);
                        let want = if (0..3).contains(&si) && (0..3).contains(&sj) {
                            src[(si * 3 + sj) as usize]
                        } else {
                            1
                        };
                        img[(i * 3 + j) as usize] == want
                    })
                })
            })
        });
        assert!(ok, "{img:?}");
    }
}
