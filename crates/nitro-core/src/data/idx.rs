//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed (detected by magic bytes).

use crate::error::{Error, Result};
use alloc::format;
use alloc::string::{String, ToString};
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

/// The most a DEFLATE stream can expand (its longest match, 258 bytes, costs at least two
/// bits): a gzip file of `n` bytes cannot hold more than about `1032·n` bytes of data.
const MAX_GZIP_RATIO: u64 = 1032;

/// Read an IDX file of unsigned bytes (type code 0x08), gzip or raw.
///
/// Memory is bounded by what the file can hold: the header is read first, and the payload it
/// declares is checked against the file's size (for gzip, against the most the compressed
/// size can expand to) before it is allocated; a payload of another size is an error naming
/// the file.
pub fn read_idx_u8(path: &Path) -> Result<IdxU8> {
    let named = |e: Error| match e {
        Error::Format(m) => Error::format(format!("{}: {m}", path.display())),
        other => other,
    };
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let size = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut file = std::io::BufReader::new(file);
    let mut magic = [0u8; 2];
    let got = read_full(&mut file, &mut magic).map_err(|e| io_err(path, e))?;
    let start = std::io::Cursor::new(magic[..got].to_vec());
    if got == 2 && magic == [0x1f, 0x8b] {
        let gz = flate2::read::GzDecoder::new(start.chain(file));
        let most = size.saturating_mul(MAX_GZIP_RATIO);
        read_stream(gz, most).map_err(|e| match e {
            StreamError::Io(e) => {
                Error::format(format!("{}: corrupt gzip stream: {e}", path.display()))
            }
            StreamError::Format(e) => named(e),
        })
    } else {
        read_stream(start.chain(file), size).map_err(|e| match e {
            StreamError::Io(e) => io_err(path, e),
            StreamError::Format(e) => named(e),
        })
    }
}

/// What reading an IDX stream can fail with: the stream itself, or its contents.
enum StreamError {
    Io(std::io::Error),
    Format(Error),
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// Fill `buf` as far as the stream goes; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Read an IDX stream that holds at most `most` bytes: header, then exactly the payload it
/// declares, allocated only once the declared size is known to fit.
fn read_stream(mut r: impl Read, most: u64) -> Result<IdxU8, StreamError> {
    let mut head = [0u8; 4];
    let n = read_full(&mut r, &mut head)?;
    let mut header = head[..n].to_vec();
    if n == 4 {
        let mut dims = alloc::vec![0u8; 4 * usize::from(head[3])];
        let n = read_full(&mut r, &mut dims)?;
        header.extend_from_slice(&dims[..n]);
    }
    let (dims, total) = parse_header(&header).map_err(StreamError::Format)?;
    let room = most.saturating_sub(header.len() as u64);
    if total as u64 > room {
        return Err(StreamError::Format(Error::format(format!(
            "IDX header promises {total} bytes of data ({dims:?}), more than the file can hold"
        ))));
    }
    let mut data = Vec::new();
    data.try_reserve_exact(total).map_err(|_| {
        StreamError::Format(Error::format(format!(
            "cannot allocate the {total} bytes of data the IDX header promises"
        )))
    })?;
    // One byte more than promised tells a longer payload apart.
    r.take(total as u64 + 1).read_to_end(&mut data)?;
    if data.len() != total {
        let has = match data.len() > total {
            true => String::from("more"),
            false => data.len().to_string(),
        };
        return Err(StreamError::Format(Error::format(format!(
            "IDX header promises {total} bytes of data, file has {has}"
        ))));
    }
    Ok(IdxU8 { dims, data })
}

/// The dimensions and payload size of an IDX header, `b` holding at least the header.
fn parse_header(b: &[u8]) -> Result<(Vec<usize>, usize)> {
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
    for d in b[4..4 + 4 * nd].chunks_exact(4) {
        let d = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        total = total
            .checked_mul(d)
            .ok_or_else(|| Error::format("IDX dimensions overflow"))?;
        dims.push(d);
    }
    Ok((dims, total))
}

/// Parse the bytes of an unsigned-byte IDX file.
pub fn parse_idx_u8(b: &[u8]) -> Result<IdxU8> {
    let (dims, total) = parse_header(b)?;
    let payload = &b[4 + 4 * dims.len()..];
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
