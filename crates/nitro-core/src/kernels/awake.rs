//! The pool kept awake through a step ([`super::par::on_pool`]).
//!
//! A training step forks and joins a few dozen times, with short sequential stretches between
//! (packing, the activations, the loss). Between them rayon's idle workers yield to the OS and
//! soon sleep on a futex, and waking one is a system call and an inter-processor interrupt: on
//! the 2-core KVM guests this project is measured on, `rayon::join` of two 50 µs halves takes
//! 53 µs back to back but 86–140 µs once the other worker has been idle for 20 µs or more
//! (BENCHMARKS.md). So while a step runs, every other worker of the pool runs a *poller*: it
//! takes whatever work the pool has (`rayon::yield_now`, which steals like an idle worker, but
//! without any system call) and otherwise spins, until the step is done.
//!
//! A poller ends on its own after [`IDLE`] without finding work. That bounds what it can cost
//! when it is not wanted, and it is what keeps the scheme free of deadlocks: a worker that is
//! already inside a job can steal a poller while it waits for that job's other half; the job
//! cannot resume until the poller returns, so the poller must return without being told.
//! Which thread runs which piece never changes a result (every parallel loop is cut into
//! disjoint pieces, [`super::par`]). One step at a time keeps the pool awake: a step inside a
//! step, or one started beside it from another thread, runs as before; so does a step on a pool
//! with more workers than the process has cores (pollers would take the cores from the work).

use core::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a poller looks for work in vain before it ends (and its worker goes back to
/// rayon's own idling): longer than the sequential stretches of a step, short enough to cost
/// nothing noticeable when a poller is stuck below a waiting job.
const IDLE: Duration = Duration::from_millis(5);

/// Spins between two looks for work (`pause` instructions: a few hundred cycles).
const SPINS: u32 = 32;

/// Looks for work between two readings of the clock.
const LOOKS_PER_CLOCK: u32 = 16;

/// Whether some step keeps its pool awake now: one at a time in the process, so a step inside
/// a step (or beside it, from another thread) adds no pollers.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// `f` on a thread of the current pool (at once when the caller is one), with every other
/// worker polling for work until `f` returns (see the module docs).
pub(super) fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    run_up_to(cores(), f)
}

/// [`run`] with pollers only on pools of at most `max_threads` workers.
fn run_up_to<R: Send>(max_threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let done = &done;
    rayon::scope(|s| {
        let threads = rayon::current_num_threads();
        if threads < 2
            || threads > max_threads
            || ACTIVE
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return f();
        }
        // Set `done` however `f` ends (a panic too): the scope waits for every poller.
        let _guard = Done(done);
        let owner = rayon::current_thread_index();
        for _ in 1..threads {
            s.spawn(move |_| {
                // The owner itself may pick a poller up while it waits inside `f`: it must
                // not poll.
                if rayon::current_thread_index() != owner {
                    poll(done);
                }
            });
        }
        f()
    })
}

/// The threads this process may run at once: a pool with more workers than that gets no
/// pollers (they would spin on the cores its working threads need).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Marks the step done (and the process free for another) when dropped.
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
        ACTIVE.store(false, Ordering::Release);
    }
}

/// Run the pool's pending work until `done`, or until none was found for [`IDLE`].
fn poll(done: &AtomicBool) {
    let mut idle_since = Instant::now();
    let mut looks = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = Instant::now();
            looks = 0;
            continue;
        }
        for _ in 0..SPINS {
            core::hint::spin_loop();
        }
        looks += 1;
        if looks == LOOKS_PER_CLOCK {
            looks = 0;
            if idle_since.elapsed() >= IDLE {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    /// `f()` on its own thread, failing the test if it has not returned within a minute (a
    /// hang here is a deadlock; the test harness ends the stuck thread with the process).
    fn within_a_minute<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("hung for a minute: deadlocked")
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool")
    }

    #[test]
    fn a_poller_runs_pending_work_and_ends_by_itself_when_there_is_none() {
        let ran = within_a_minute(|| {
            pool(1).install(|| {
                let ran = std::sync::Arc::new(AtomicBool::new(false));
                let r = ran.clone();
                rayon::spawn(move || r.store(true, Ordering::Release));
                // Never told it is done: it must end on its own after IDLE without work.
                let never = AtomicBool::new(false);
                poll(&never);
                ran.load(Ordering::Acquire)
            })
        });
        assert!(ran, "the poller did not run the pending job");
    }

    /// A tree of joins, every few nodes a step inside the step, leaves doing a little work.
    fn tree(depth: u32, done: &AtomicUsize) -> u64 {
        if depth == 0 {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(20) {}
            done.fetch_add(1, Ordering::Relaxed);
            return 1;
        }
        let (a, b) = rayon::join(
            || {
                if depth % 3 == 0 {
                    run_up_to(usize::MAX, || tree(depth - 1, done))
                } else {
                    tree(depth - 1, done)
                }
            },
            || tree(depth - 1, done),
        );
        a + b
    }

    #[test]
    fn steps_with_nested_steps_end_on_every_pool_size() {
        // Pollers on every pool, more workers than cores too (not what `run` does there).
        for threads in [1, 2, 3, 4, 8] {
            let (leaves, counted) = within_a_minute(move || {
                let done = AtomicUsize::new(0);
                let mut leaves = 0;
                for _ in 0..20 {
                    leaves += pool(threads).install(|| run_up_to(usize::MAX, || tree(8, &done)));
                }
                (leaves, done.load(Ordering::Relaxed))
            });
            assert_eq!((leaves, counted), (20 * 256, 20 * 256), "{threads} threads");
        }
    }

    // (Whether `ACTIVE` is cleared is not asserted: the tests of the crate run steps at the
    // same time, on other threads, and any of them may hold it.)
    #[test]
    fn a_panicking_step_ends_its_pollers_and_passes_the_panic_on() {
        let caught = within_a_minute(|| {
            pool(2).install(|| {
                std::panic::catch_unwind(|| run(|| -> u32 { panic!("inside the step") })).is_err()
            })
        });
        assert!(caught, "the panic was lost");
        assert_eq!(within_a_minute(|| pool(2).install(|| run(|| 5))), 5);
    }
}
