//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed (detected by magic bytes).

use crate::error::{Error, Result};
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An unsigned-byte IDX tensor: its dimensions and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxU8 {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Read an IDX file of unsigned bytes (type code 0x08), gzip or raw.
pub fn read_idx_u8(path: &Path) -> Result<IdxU8> {
    let raw = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(format!("{}: corrupt gzip stream: {e}", path.display())))?;
        out
    } else {
        raw
    };
    parse_idx_u8(&bytes).map_err(|e| match e {
        Error::Format(m) => Error::format(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Parse the bytes of an unsigned-byte IDX file.
pub fn parse_idx_u8(b: &[u8]) -> Result<IdxU8> {
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(Error::format("not an IDX file (bad magic)"));
    }
    if b[2] != 0x08 {
        return Err(Error::format(format!(
            "IDX type code 0x{:02x} is not unsigned byte (0x08)",
            b[2]
        )));
    }
    let nd = usize::from(b[3]);
    if nd == 0 || b.len() < 4 + 4 * nd {
        return Err(Error::format("truncated IDX header"));
    }
    let mut dims = Vec::with_capacity(nd);
    let mut total: usize = 1;
    for i in 0..nd {
        let o = 4 + 4 * i;
        let d = u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
        total = total
            .checked_mul(d)
            .ok_or_else(|| Error::format("IDX dimensions overflow"))?;
        dims.push(d);
    }
    let payload = &b[4 + 4 * nd..];
    if payload.len() != total {
        return Err(Error::format(format!(
            "IDX header promises {total} bytes of data, file has {}",
            payload.len()
        )));
    }
    Ok(IdxU8 {
        dims,
        data: payload.to_vec(),
    })
}

/// Train and test images (`N×28×28` as rows of 784) and labels of an MNIST-format directory.
#[derive(Clone, Debug)]
pub struct MnistLike {
    /// Training images, `N × 784`.
    pub train_x: ndarray::Array2<u8>,
    /// Training labels.
    pub train_y: Vec<usize>,
    /// Test images.
    pub test_x: ndarray::Array2<u8>,
    /// Test labels.
    pub test_y: Vec<usize>,
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::format(format!(
        "{}: neither {stem} nor {stem}.gz found (expected MNIST-format IDX files; on Debian \
         `apt-get install dataset-fashion-mnist` provides /usr/share/datasets/fashion-mnist)",
        dir.display()
    )))
}

fn images(path: &Path) -> Result<ndarray::Array2<u8>> {
    let t = read_idx_u8(path)?;
    if t.dims.len() != 3 {
        return Err(Error::format(format!(
            "{}: images must have 3 dimensions, found {:?}",
            path.display(),
            t.dims
        )));
    }
    let (n, f) = (t.dims[0], t.dims[1] * t.dims[2]);
    ndarray::Array2::from_shape_vec((n, f), t.data).map_err(|e| Error::format(e.to_string()))
}

fn labels(path: &Path, classes: usize) -> Result<Vec<usize>> {
    let t = read_idx_u8(path)?;
    if t.dims.len() != 1 {
        return Err(Error::format(format!(
            "{}: labels must be 1-D",
            path.display()
        )));
    }
    if let Some(bad) = t.data.iter().find(|&&l| usize::from(l) >= classes) {
        return Err(Error::format(format!(
            "{}: label {bad} is not below {classes}",
            path.display()
        )));
    }
    Ok(t.data.iter().map(|&l| usize::from(l)).collect())
}

/// Load the four standard files (`train-images-idx3-ubyte[.gz]`, …) from `dir`.
pub fn load_mnist_like(dir: &Path) -> Result<MnistLike> {
    let train_x = images(&find(dir, "train-images-idx3-ubyte")?)?;
    let train_y = labels(&find(dir, "train-labels-idx1-ubyte")?, 10)?;
    let test_x = images(&find(dir, "t10k-images-idx3-ubyte")?)?;
    let test_y = labels(&find(dir, "t10k-labels-idx1-ubyte")?, 10)?;
    if train_x.nrows() != train_y.len() || test_x.nrows() != test_y.len() {
        return Err(Error::format(format!(
            "{}: image and label counts differ",
            dir.display()
        )));
    }
    Ok(MnistLike {
        train_x,
        train_y,
        test_x,
        test_y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_and_rejects() {
        let t = parse_idx_u8(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(t.dims, vec![2, 3]);
        assert_eq!(t.data, vec![1, 2, 3, 4, 5, 6]);
        assert!(parse_idx_u8(&idx(&[2, 3], &[1, 2, 3])).is_err());
        assert!(parse_idx_u8(&idx(&[2, 3], &[0; 7])).is_err());
        assert!(parse_idx_u8(&[1, 0, 8, 1]).is_err());
        assert!(parse_idx_u8(&[0, 0, 8]).is_err());
        let mut f = idx(&[1], &[0]);
        f[2] = 0x0d;
        assert!(parse_idx_u8(&f).is_err());
        assert!(parse_idx_u8(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[])).is_err());
    }

    #[test]
    fn reads_gzip_and_raw_files() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("nitro-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = idx(&[3], &[7, 8, 9]);
        std::fs::write(dir.join("raw"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        std::fs::write(dir.join("z"), gz.finish().unwrap()).unwrap();
        assert_eq!(read_idx_u8(&dir.join("raw")).unwrap().data, vec![7, 8, 9]);
        assert_eq!(read_idx_u8(&dir.join("z")).unwrap().data, vec![7, 8, 9]);
        std::fs::write(dir.join("bad"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
        assert!(matches!(
            read_idx_u8(&dir.join("bad")),
            Err(Error::Format(_))
        ));
        assert!(matches!(
            read_idx_u8(&dir.join("missing")),
            Err(Error::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
