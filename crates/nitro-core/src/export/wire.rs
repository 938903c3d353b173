//! The blob's byte-level pieces, shared by every layout version: the checksum, the
//! bounds-checked reader, and the tensor encoding of version 2 (each tensor in the narrowest
//! signed width that holds all of its values exactly).

use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;

/// FNV-1a, 32 bit: a dependency-free integrity check (not a cryptographic one). Any change of
/// a single byte changes it: each step is a bijection of the state for a fixed input byte.
pub(super) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `v` as a blob's `u32` field, or an error naming `what`.
pub(super) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} does not fit the blob (u32)")))
}

/// Append a `u32` field.
pub(super) fn put_u32(buf: &mut Vec<u8>, v: usize, what: &str) -> Result<()> {
    buf.extend_from_slice(&u32_of(v, what)?.to_le_bytes());
    Ok(())
}

/// Append a name: its length as one byte, then its ASCII bytes.
pub(super) fn put_name(buf: &mut Vec<u8>, name: &str) -> Result<()> {
    let len = u8::try_from(name.len()).map_err(|_| Error::config("name too long for a blob"))?;
    buf.push(len);
    buf.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Bytes per value of the narrowest of `i8`, `i16`, `i32` that holds every value exactly (1 for
/// an empty tensor).
pub fn tensor_width(values: impl IntoIterator<Item = i32>) -> u8 {
    let (lo, hi) = values
        .into_iter()
        .fold((0i32, 0i32), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let fits = |min: i32, max: i32| lo >= min && hi <= max;
    if fits(i8::MIN.into(), i8::MAX.into()) {
        1
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        2
    } else {
        4
    }
}

/// Append a tensor in the version-2 encoding: its width byte ([`tensor_width`]), then every
/// value little-endian in that width. The values are read twice (width, then bytes), so no
/// copy of the tensor is made.
pub(super) fn put_tensor<I>(buf: &mut Vec<u8>, values: I)
where
    I: IntoIterator<Item = i32> + Clone,
{
    let width = tensor_width(values.clone());
    buf.push(width);
    for v in values {
        // Exact: `tensor_width` proved that every value fits `width` bytes.
        match width {
            1 => buf.push(v as i8 as u8),
            2 => buf.extend_from_slice(&(v as i16).to_le_bytes()),
            _ => buf.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

/// A bounds-checked reader over the blob.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    /// The position of the next byte to read.
    pub pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` from their start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader::at(bytes, 0)
    }
    /// A reader of `bytes` from byte `pos`.
    pub fn at(bytes: &'a [u8], pos: usize) -> Self {
        Reader { bytes, pos }
    }
    /// The next `n` bytes, or a truncation error naming `what`.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::format(format!(
                "model blob truncated while reading {what} at byte {}",
                self.pos
            ))),
        }
    }
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub fn usize(&mut self, what: &str) -> Result<usize> {
        usize::try_from(self.u32(what)?)
            .map_err(|_| Error::format(format!("model blob: {what} too large for this target")))
    }
    /// A `0`/`1` byte as a flag.
    pub fn bool(&mut self, what: &str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            o => Err(Error::format(format!(
                "model blob: {what} is {o}, expected 0 or 1"
            ))),
        }
    }
    pub fn name(&mut self, what: &str) -> Result<&'a str> {
        let n = usize::from(self.u8(what)?);
        core::str::from_utf8(self.take(n, what)?)
            .map_err(|_| Error::format(format!("model blob: {what} is not UTF-8")))
    }
    /// `n` little-endian `i32`s (the version-1 tensor encoding).
    pub fn i32s(&mut self, n: usize, what: &str) -> Result<Vec<i32>> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| Error::format(format!("model blob: {what} too large")))?;
        Ok(self
            .take(len, what)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    /// A tensor of `n` values in the version-2 encoding ([`put_tensor`]). The bytes are
    /// bounds-checked before the values are allocated, so a hostile count cannot allocate more
    /// than four times the blob's own size.
    pub fn tensor(&mut self, n: usize, what: &str) -> Result<Vec<i32>> {
        let width = self.u8(what)?;
        if !matches!(width, 1 | 2 | 4) {
            return Err(Error::format(format!(
                "model blob: {what} has value width {width}; expected 1, 2 or 4 bytes"
            )));
        }
        let len = n
            .checked_mul(usize::from(width))
            .ok_or_else(|| Error::format(format!("model blob: {what} too large")))?;
        let bytes = self.take(len, what)?;
        // Any of the three widths reads exactly; `to_blob` writes the narrowest.
        Ok(match width {
            1 => bytes.iter().map(|&b| i32::from(b as i8)).collect(),
            2 => bytes
                .chunks_exact(2)
                .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
            _ => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}
