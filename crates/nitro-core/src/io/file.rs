//! Files: atomic writes, and reads whose format errors name the file.

use crate::error::{Error, Result};
use alloc::format;
use alloc::string::ToString;

/// The temporary file of [`write_atomic`] for `path`: `.NAME.tmp` beside it — one fixed name
/// per target, so a writer killed before its rename leaves one file that the next save of the
/// same target reuses, never a trail of them.
pub fn temp_path(path: &std::path::Path) -> Result<std::path::PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::config(format!("{} is not a file path", path.display())))?;
    Ok(dir.join(format!(".{}.tmp", name.to_string_lossy())))
}

/// Write bytes to `path` atomically: the temporary file [`temp_path`] in the same directory
/// (locked, truncated, written, synced), then renamed over the target. On error the target is
/// untouched and the temporary file removed; a stale temporary file of a killed writer is
/// reused. Writers of the same target, in one process or several, take turns.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let tmp = temp_path(path)?;
    let f = open_locked(&tmp).map_err(io)?;
    let result = (|| {
        let mut f = &f;
        f.set_len(0)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Still holding the lock: the file is ours to remove.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// The temporary file `tmp`, created if missing, with this writer holding its lock.
fn open_locked(tmp: &std::path::Path) -> std::io::Result<std::fs::File> {
    loop {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(tmp)?;
        match lock(&f) {
            Ok(()) => {}
            // A file system without locks: write unlocked, as without this one.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Ok(f),
            Err(e) => return Err(e),
        }
        // The writer that held the lock before may have renamed this file over its target (or
        // removed it): then it is not the temporary file any more — open the path again.
        if still_at(&f, tmp)? {
            return Ok(f);
        }
    }
}

/// Take `f`'s exclusive lock, waiting for it.
#[cfg(nitro_file_lock)]
#[clippy::msrv = "1.89"] // compiled only by Rust 1.89+ (build.rs)
fn lock(f: &std::fs::File) -> std::io::Result<()> {
    f.lock()
}

/// `File::lock` is Rust 1.89+ (see build.rs): an older compiler writes unlocked, as on a file
/// system without locks.
#[cfg(not(nitro_file_lock))]
fn lock(_f: &std::fs::File) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Whether the open file `f` is the file at `path`.
#[cfg(unix)]
fn still_at(f: &std::fs::File, path: &std::path::Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = f.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(open.dev() == now.dev() && open.ino() == now.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the open file `f` is the file at `path`: not checked elsewhere than Unix (writers of
/// one target still take turns on the lock, but one that waited may write into the file its
/// predecessor renamed).
#[cfg(not(unix))]
fn still_at(_f: &std::fs::File, _path: &std::path::Path) -> std::io::Result<bool> {
    Ok(true)
}

/// Read `path` and parse it with `parse`; a format error names the file.
pub(super) fn read_with<T>(
    path: &std::path::Path,
    parse: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    parse(&bytes).map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        o => o,
    })
}
