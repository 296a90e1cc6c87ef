//! The thread pool tract runs one image on. tract splits its matrix products (above a size gate
//! set here) across the pool of the [`Executor`] in scope, and so do the backend's own
//! convolution ops (`backend::tract_ops`, each with its own gate); tract's depthwise convolutions
//! and element-wise ops, which it could split too, are kept whole (measured below), and the rest of
//! a call runs on the calling thread. [`IntraOp::run`] keeps the pool's other
//! workers awake for the whole call, picking up those chunks as they come, because a worker that went to sleep between two operators costs more to
//! wake on a small virtual machine than a 48 px MobileNetV2 layer takes to run: with plain rayon
//! wake-ups two threads were slower than one (docs/RESULTS.md). ONNX Runtime's pool spins the
//! same way. The tract backend and `examples/tract_profile` both run through here.
//!
//! The pool serves one call at a time; a call that comes while it is busy (one model shared by
//! several threads) runs on its own thread instead. Two calls in one pool could each leave a
//! spinning helper on the other's worker, above that call's own unfinished work, and then both
//! spin forever. The runtime's many-threads test (`tests/backends.rs`) hung that way in 12 of 150
//! runs under qemu (aarch64, 2 cores), whose timing makes it likely, and in none of 150 since;
//! natively it never showed in 1,000 runs, but nothing ruled it out on a real board. Throughput
//! of threads sharing one model: no clear change at 1-2 threads, +13 % at 4 (2 vCPUs,
//! `examples/shared_model_bench`; docs/RESULTS.md, "Threads sharing one model").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tract_onnx::tract_core::knobs;
use tract_linalg::multithread::{
    multithread_tract_scope, set_threading_element_threshold, set_threading_panel_threshold, Executor,
};

/// Matrix products of at least this many kernel tiles are split across the pool (tract's default
/// is 64, sized for waking sleeping workers). With the helpers already spinning, smaller products
/// pay off too: 48 px MobileNetV2, 2 threads, `examples/tract_profile`, 5 interleaved rounds,
/// median 2.57 ms at 64, 1.84 ms at 4 (1 thread: 2.86 ms); the 112 px MobileNetV2 and ResNet-18
/// did not move beyond noise.
const PANEL_THRESHOLD: usize = 4;

/// Depthwise convolutions, packing and element-wise ops are never split across the pool: only
/// matrix products are. Split, they ran slower than on one thread at every size measured. At 48
/// px, 2 threads, `tract_profile models-onnx/eac_mbv2.onnx 3000` with `FER_TRACT_ELEMENT_GATE=0|
/// 4096|16384|32768`, 2-3 interleaved rounds: 1.72-1.78, 1.69-1.75, 1.57, 1.39-1.50 ms (per node,
/// the split depthwise convolutions took 1.75x and the ReLU6 clips 2x their single-thread time).
/// At 112 px, where tract's default gate of 32,768 splits most of them, `tract_profile` of a 112 px
/// MobileNetV2, 2 threads, 3-4 interleaved rounds: 3.75-3.93 ms at 32,768, 3.42-3.55 at 131,072,
/// 3.38-3.55 never (depthwise 1.27 -> 0.91 ms, against 0.85 on one thread); `fer-run bench
/// --backend tract`, 3 interleaved rounds, p50 3.67-3.80 -> 3.37-3.56 ms. The 48 px MobileNetV2 did
/// not move; the 112 px ResNet-18's ReLUs and residual adds did gain from their split (0.23 -> 0.30
/// ms per call unsplit, `tract_profile`), but that is under 1 % of its ~8.5 ms and within the noise of
/// `fer-run bench` (7 interleaved rounds, median p50 8.2 before, 8.4 ms after).
const ELEMENT_THRESHOLD: usize = usize::MAX;

/// A split matrix product becomes this many chunks per thread (tract's default is 4, slack for
/// uneven threads). On these small products each chunk is a job to hand out and a scratch space
/// to set up, which cost more than the balance buys: 48 px MobileNetV2, 2 threads,
/// `tract_profile models-onnx/eac_mbv2.onnx 3000`, 3 interleaved rounds: 1.13-1.18 ms at 1 against
/// 1.27-1.32 ms at 4 (tract's Intel kernel choice: 1.22-1.27 against 1.31-1.37). Installed as
/// tract's process-wide default, so `TRACT_MMM_CHUNKS_PER_THREAD` in the environment still wins;
/// tract reads it once, at the first split product.
const CHUNKS_PER_THREAD: &str = "1";

/// How many threads tract may use inside one call.
#[derive(Debug, Clone)]
pub struct IntraOp {
    executor: Executor,
    /// Set while a call runs in the pool (shared by clones, which share the pool).
    busy: Arc<AtomicBool>,
}

impl IntraOp {
    /// One thread per core, as ONNX Runtime's default intra-op pool; `FER_TRACT_THREADS=n`
    /// overrides it (1 = no pool, the calling thread alone).
    pub fn from_env() -> IntraOp {
        let n = std::env::var("FER_TRACT_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        IntraOp::with_threads(n)
    }

    /// A pool of `n` threads (`n <= 1`: the calling thread alone).
    pub fn with_threads(n: usize) -> IntraOp {
        let executor = if n <= 1 {
            Executor::SingleThread
        } else {
            // tract's gates are process-wide and only read on a multi-thread executor.
            set_threading_panel_threshold(PANEL_THRESHOLD);
            set_threading_element_threshold(ELEMENT_THRESHOLD);
            // Refused only if another part of the process installed a different value: then
            // that value stands.
            if let Err(e) = knobs::set_config_global("TRACT_MMM_CHUNKS_PER_THREAD", CHUNKS_PER_THREAD) {
                tracing::debug!("tract chunks per thread left as they are: {e}");
            }
            Executor::multithread_with_name(n, "fer-tract")
        };
        IntraOp {
            executor,
            busy: Arc::default(),
        }
    }

    /// The calling thread alone (images of a batch each run this way, one per core).
    pub fn single_thread() -> IntraOp {
        IntraOp {
            executor: Executor::SingleThread,
            busy: Arc::default(),
        }
    }

    /// Threads tract may use in a call.
    pub fn threads(&self) -> usize {
        match &self.executor {
            Executor::MultiThread(pool) => pool.current_num_threads(),
            _ => 1,
        }
    }

    /// Runs `f` (tract work) with this pool in scope. With a pool, `f` runs on one of its
    /// workers while the others spin, taking the chunks tract hands out, until `f` returns; if
    /// another call holds the pool, `f` runs on the calling thread alone (see the module's note).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let pool = match &self.executor {
            Executor::MultiThread(pool)
                if self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() =>
            {
                pool
            }
            // No pool, or another call holds it: this thread alone.
            _ => return multithread_tract_scope(Executor::SingleThread, f),
        };
        let _free_when_done = SetOnDrop(&self.busy, false);
        let scoped = || multithread_tract_scope(self.executor.clone(), f);
        pool.install(|| {
            let caller = rayon::current_thread_index();
            let done = AtomicBool::new(false);
            rayon::in_place_scope(|scope| {
                for _ in 1..pool.current_num_threads() {
                    scope.spawn(|_| {
                        // Thieves take the oldest job first, so the helpers land on the other
                        // workers; should the caller ever run one itself (it may, while it
                        // waits inside a parallel loop), it must not spin: it ends the run.
                        if rayon::current_thread_index() == caller {
                            return;
                        }
                        while !done.load(Ordering::Acquire) {
                            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                                std::hint::spin_loop();
                            }
                        }
                    });
                }
                // Stops the helpers when `f` returns, also by a panic: the scope waits for them
                // before it passes the panic on.
                let _stop_helpers = SetOnDrop(&done, true);
                scoped()
            })
        })
    }
}

/// Stores its value into the flag when dropped: at the end of a scope, whether it returned or
/// panicked.
struct SetOnDrop<'a>(&'a AtomicBool, bool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(self.1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// The pool's workers do take the work handed out inside `run`, the result is whole, and
    /// `run` returns (the helpers stop) every time, also when called back to back. That the
    /// helpers spin rather than sleep is a speed property, measured in docs/RESULTS.md, not here.
    #[test]
    fn helpers_share_the_work_and_stop() {
        let pool = IntraOp::with_threads(2);
        assert_eq!(pool.threads(), 2);
        // Other tests' pools share this machine's cores (their helpers spin too), so the second
        // worker may not be scheduled during a short call: calls of ~1 ms of work, until it
        // takes a chunk or 2,000 calls went by.
        let mut most_threads = 0;
        for _ in 0..2_000 {
            let (sum, threads) = pool.run(|| {
                let seen = std::sync::Mutex::new(std::collections::HashSet::new());
                let sum: usize = (0..10_000usize)
                    .into_par_iter()
                    .with_min_len(100)
                    .map(|i| {
                        seen.lock().unwrap().insert(rayon::current_thread_index());
                        (0..50).fold(i, |a, _| std::hint::black_box(a))
                    })
                    .sum();
                (sum, seen.into_inner().unwrap().len())
            });
            assert_eq!(sum, 10_000 * 9_999 / 2);
            most_threads = most_threads.max(threads);
            if most_threads == 2 {
                break;
            }
        }
        assert_eq!(most_threads, 2, "the second worker never took a chunk");
        assert_eq!(IntraOp::single_thread().run(|| 7), 7);
        assert_eq!(IntraOp::with_threads(1).threads(), 1);
    }

    /// A call made while another holds the pool runs on its caller's thread: inside the pool the
    /// two calls' spinning helpers could wait on each other forever (the module's note). The
    /// pool is free again after each call, also after one that panicked (whose helpers stop:
    /// they once spun on, and the panic never came out).
    #[test]
    fn a_call_while_the_pool_is_busy_runs_on_its_own_thread() {
        let pool = IntraOp::with_threads(2);
        let (first, second) = pool.run(|| {
            let second = std::thread::scope(|s| s.spawn(|| pool.run(rayon::current_thread_index)).join().unwrap());
            (rayon::current_thread_index(), second)
        });
        assert!(first.is_some(), "the first call runs in the pool");
        assert_eq!(second, None, "the second call runs on its own thread");
        assert!(pool.run(rayon::current_thread_index).is_some(), "the pool is free again");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.run(|| panic!("in a call"))));
        assert!(panicked.is_err());
        assert!(pool.run(rayon::current_thread_index).is_some(), "a panic frees the pool");
    }

    /// A pool installs one chunk per thread as tract's default for split matrix products, below
    /// the environment (which a maintainer uses to try other values).
    #[test]
    fn a_pool_sets_one_chunk_per_thread() {
        let _pool = IntraOp::with_threads(2);
        let knob = &tract_linalg::knobs::TRACT_MMM_CHUNKS_PER_THREAD;
        match std::env::var("TRACT_MMM_CHUNKS_PER_THREAD") {
            Err(_) => assert_eq!(knob.get(), Some(1)),
            Ok(v) => assert_eq!(knob.get(), v.parse().ok()),
        }
    }
}
