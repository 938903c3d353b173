//! Thread pools and fork safety: which rayon pool a call's compute runs in.
//!
//! Results do not depend on the choice (docs/algorithm.md: same bits on any thread count); only speed does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::errors::value_err;

/// Set in a child process after `fork()`: the parent's rayon pool has no threads there, so work
/// must not be handed to it (tokenizers guards the same way).
static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::SeqCst);
}

/// Install the fork guard (once, when the module is imported).
pub fn install_fork_guard() {
    // SAFETY: registers a plain function that only stores to an atomic; it is async-signal-safe.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    }
}

/// Pools built for an explicit thread count, reused by later calls (starting and stopping the
/// threads of a new pool costs more than a small training step). Tagged with the process that
/// built them.
static POOLS: Mutex<Vec<(u32, usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
/// Distinct thread counts kept in [`POOLS`]: a call with another count builds a pool for itself
/// and drops it afterwards, so the cache never holds more than this many pools.
pub const MAX_POOLS: usize = 8;

/// The most worker threads a call may ask for: four per CPU this process may use
/// (`std::thread::available_parallelism`, 1 if unknown). More threads than that only cost memory
/// and start-up time (results never depend on the count), and a huge count would start thousands
/// of threads before the operating system refused one.
pub fn max_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_mul(4)
}

/// Pools held in the cache now (at most [`MAX_POOLS`]); for the tests.
#[pyfunction]
pub fn cached_pools() -> usize {
    POOLS.try_lock().map_or(0, |p| p.len())
}

/// The pool a call runs in: `threads` workers if given, one worker in a forked child, otherwise
/// rayon's global pool (`None`).
pub fn pool_for(threads: Option<usize>) -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    let n = match threads {
        Some(n) if n == 0 || n > max_threads() => {
            return Err(value_err(format!(
                "threads must be an integer in 1..={} (4 per CPU) or None, got {n}",
                max_threads()
            )))
        }
        Some(n) => n,
        None if FORKED.load(Ordering::SeqCst) => 1,
        None => return Ok(None),
    };
    let build = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(Arc::new)
            .map_err(|e| PyOSError::new_err(format!("cannot start {n} worker threads: {e}")))
    };
    let pid = std::process::id();
    // try_lock: in a child forked while another thread held the lock, it stays locked forever;
    // such a child builds its pools without the cache.
    let Ok(mut pools) = POOLS.try_lock() else {
        return build().map(Some);
    };
    if let Some((_, _, p)) = pools.iter().find(|(q, m, _)| *q == pid && *m == n) {
        return Ok(Some(Arc::clone(p)));
    }
    // Pools of a parent process have no threads here: forget them without running their drop.
    for stale in std::mem::take(&mut *pools) {
        if stale.0 == pid {
            pools.push(stale);
        } else {
            std::mem::forget(stale);
        }
    }
    let p = build()?;
    if pools.len() < MAX_POOLS {
        pools.push((pid, n, Arc::clone(&p)));
    }
    Ok(Some(p))
}

/// `f` (a whole training run) on a thread of the chosen pool, or of the global one: its
/// steps then start on the pool where they are, instead of each being handed to it from the
/// caller's thread and waited for (`nitro_core::kernels::par::inside_pool`).
pub fn inside_pool<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => nitro_core::kernels::par::inside_pool(f),
    }
}

/// Run `f` in `pool`, or on the calling thread (rayon's global pool) for `None`.
pub fn in_pool<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// How often [`checking_signals`] looks for a signal while the work runs.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// `work` on another thread, the GIL released, while this one waits for it and checks for
/// signals every [`SIGNAL_POLL`] (where this is CPython's main thread, the only one that runs
/// signal handlers), handing each exception a signal raised (a Ctrl-C's `KeyboardInterrupt`)
/// to `signal`; `work`'s result (its panic is passed on).
pub fn checking_signals<T: Send>(
    py: Python<'_>,
    signal: impl Fn(PyErr) + Sync,
    work: impl FnOnce() -> T + Send,
) -> T {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let outcome = py.detach(|| {
        std::thread::scope(|s| {
            let (done, finished) = channel::<()>();
            let worker = s.spawn(move || {
                let r = work();
                let _ = done.send(());
                r
            });
            // Disconnected: the work panicked (its sender dropped); `join` says so.
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(SIGNAL_POLL) {
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    signal(e);
                }
            }
            worker.join()
        })
    });
    match outcome {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
