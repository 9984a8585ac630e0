//! Helper threads for a lone text's pass that wait for their next task by spinning a while
//! before they sleep.
//!
//! A pass over one text splits each of its 24 products, 12 attentions and most row-wise steps
//! between the threads: about 50 joins in a few milliseconds, the serial steps between two of
//! them a few microseconds. A pool whose idle threads sleep at once (rayon's, before this one)
//! pays a futex wake-up, on a virtual machine an interprocessor interrupt through the hypervisor,
//! at every hand-over, and the caller sleeps on a condition variable until the last helper is
//! done. Here a helper spins on its slot for [`SPIN`] after each task, then parks; the caller
//! spins while it waits for the helpers, which finish their share about when it finishes its own.
//! The cost is a core kept busy for at most [`SPIN`] after the last task of a pass (and the
//! caller's, while it waits for a helper that was preempted: it yields then, but keeps asking).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks: longer than the serial steps between two
/// products of a pass, short beside the time between two texts at low rates.
const SPIN: Duration = Duration::from_micros(300);
/// Spins between two looks at the clock.
const SPINS_PER_CLOCK: u32 = 64;

/// A task as a helper holds it: the lifetime of what it borrows erased (see
/// [`SpinPool::run_all`]).
type Task = Box<dyn FnOnce() + Send + 'static>;

const IDLE: u8 = 0;
const READY: u8 = 1;
const DONE: u8 = 2;
const PANICKED: u8 = 3;
const STOP: u8 = 4;

/// What a helper and the caller share: the task handed over, and where it stands.
struct Slot {
    state: AtomicU8,
    task: Mutex<Option<Task>>,
}

struct Helper {
    slot: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

/// `threads` helper threads, kept until the pool is dropped.
///
/// Not `Sync`: one thread hands tasks over at a time. Two callers of [`SpinPool::run_all`] at
/// once could hand a second task to a slot whose first was not taken yet, or see the other's
/// DONE and return while their own task still held its borrows; and a task cannot capture the
/// pool (its tasks must be `Send`, which `&SpinPool` is not).
pub struct SpinPool {
    helpers: Vec<Helper>,
    not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl SpinPool {
    /// Starts `threads` helpers named `name(i)`.
    pub fn new(threads: usize, name: impl Fn(usize) -> String) -> std::io::Result<SpinPool> {
        let mut pool = SpinPool {
            helpers: Vec::with_capacity(threads),
            not_sync: std::marker::PhantomData,
        };
        for i in 0..threads {
            let slot = Arc::new(Slot {
                state: AtomicU8::new(IDLE),
                task: Mutex::new(None),
            });
            let theirs = Arc::clone(&slot);
            // On an error the helpers started so far are stopped by `pool`'s drop.
            let thread = thread::Builder::new()
                .name(name(i))
                .spawn(move || serve(&theirs))?;
            pool.helpers.push(Helper {
                slot,
                thread: Some(thread),
            });
        }
        Ok(pool)
    }

    /// Helper threads in the pool.
    pub fn threads(&self) -> usize {
        self.helpers.len()
    }

    /// Runs `tasks[i]()` for every task, the first on the calling thread and each other on a
    /// helper of its own, and returns their results in order when all are done. A panic in any
    /// task is raised here, after every task has ended.
    ///
    /// # Panics
    /// With more tasks than the pool has helpers plus one, or when a task panicked.
    pub fn run_all<'a, T: Send + 'a>(
        &self,
        tasks: Vec<Box<dyn FnOnce() -> T + Send + 'a>>,
    ) -> Vec<T> {
        assert!(
            tasks.len() <= self.helpers.len() + 1,
            "{} tasks for {} helpers and the caller",
            tasks.len(),
            self.helpers.len()
        );
        let mut results: Vec<Option<T>> = (0..tasks.len()).map(|_| None).collect();
        let mut tasks = tasks.into_iter();
        let Some(first) = tasks.next() else {
            return Vec::new();
        };
        let (first_result, rest) = results.split_first_mut().expect("one result per task");
        let handed = rest.len();
        for ((result, task), helper) in rest.iter_mut().zip(tasks).zip(&self.helpers) {
            let task: Box<dyn FnOnce() + Send + '_> = Box::new(move || *result = Some(task()));
            // SAFETY: the task borrows `results` and what the caller's tasks borrow, all of which
            // outlive this call. This function neither returns nor unwinds before every helper
            // it handed a task to has run and dropped it: the caller's own task runs under
            // `catch_unwind`, and the loop below waits for each helper's DONE or PANICKED,
            // which a helper stores only after the task (and its box) are gone.
            let task: Task =
                unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Task>(task) };
            *helper
                .slot
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task);
            helper.slot.state.store(READY, Ordering::Release);
            if let Some(thread) = &helper.thread {
                thread.thread().unpark();
            }
        }
        let own = panic::catch_unwind(AssertUnwindSafe(|| *first_result = Some(first())));
        let mut helper_panicked = false;
        for helper in &self.helpers[..handed] {
            helper_panicked |= wait_done(&helper.slot);
        }
        if let Err(payload) = own {
            panic::resume_unwind(payload);
        }
        assert!(!helper_panicked, "an embedding helper thread panicked");
        results
            .into_iter()
            .map(|r| r.expect("every task ran"))
            .collect()
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        for helper in &self.helpers {
            helper.slot.state.store(STOP, Ordering::Release);
            if let Some(thread) = &helper.thread {
                thread.thread().unpark();
            }
        }
        for helper in &mut self.helpers {
            if let Some(thread) = helper.thread.take() {
                // A helper catches its tasks' panics, so it only ends when told to.
                let _ = thread.join();
            }
        }
    }
}

/// Waits for the helper's task to end, spinning (its share takes about as long as the caller's)
/// and yielding once it takes longer than [`SPIN`] (the helper was preempted). Whether it panicked.
fn wait_done(slot: &Slot) -> bool {
    let started = Instant::now();
    let mut spins = 0u32;
    loop {
        match slot.state.load(Ordering::Acquire) {
            DONE => break,
            PANICKED => {
                slot.state.store(IDLE, Ordering::Relaxed);
                return true;
            }
            _ => {}
        }
        spins += 1;
        if spins.is_multiple_of(SPINS_PER_CLOCK) && started.elapsed() > SPIN {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    slot.state.store(IDLE, Ordering::Relaxed);
    false
}

/// A helper's life: wait for READY (spinning for [`SPIN`] since its last task, then parked),
/// run the task, say DONE or PANICKED; until STOP.
fn serve(slot: &Slot) {
    loop {
        let idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            match slot.state.load(Ordering::Acquire) {
                READY => break,
                STOP => return,
                _ => {}
            }
            spins += 1;
            if spins.is_multiple_of(SPINS_PER_CLOCK) && idle_since.elapsed() > SPIN {
                // `unpark` before `park` makes it return at once: no hand-over is lost.
                thread::park();
            } else {
                std::hint::spin_loop();
            }
        }
        let task = slot
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some(task) = task {
                task();
            }
        }));
        let state = match ran {
            Ok(()) => DONE,
            Err(payload) => {
                // A payload whose drop panics would end this thread, and the next caller would
                // wait for it forever.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(payload)));
                PANICKED
            }
        };
        slot.state.store(state, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_results_come_back_in_order() {
        let pool = SpinPool::new(3, |i| format!("test-helper{i}")).unwrap();
        assert_eq!(pool.threads(), 3);
        let data: Vec<u64> = (0..1000).collect();
        for round in 0..200u64 {
            let chunks: Vec<&[u64]> = data.chunks(250).collect();
            let tasks: Vec<Box<dyn FnOnce() -> u64 + Send + '_>> = chunks
                .iter()
                .map(|c| {
                    let c = *c;
                    Box::new(move || c.iter().sum::<u64>() + round)
                        as Box<dyn FnOnce() -> u64 + Send>
                })
                .collect();
            let sums = pool.run_all(tasks);
            let expected: Vec<u64> = data
                .chunks(250)
                .map(|c| c.iter().sum::<u64>() + round)
                .collect();
            assert_eq!(sums, expected);
            // Fewer tasks than threads, and a pause long enough for the helpers to park.
            if round % 50 == 0 {
                thread::sleep(Duration::from_millis(2));
                let one: Vec<Box<dyn FnOnce() -> u64 + Send>> =
                    vec![Box::new(|| 7), Box::new(|| 8)];
                assert_eq!(pool.run_all(one), vec![7, 8]);
            }
        }
        assert!(pool
            .run_all(Vec::<Box<dyn FnOnce() -> u8 + Send>>::new())
            .is_empty());
    }

    #[test]
    fn tasks_write_through_what_they_borrow() {
        let pool = SpinPool::new(1, |i| format!("test-helper{i}")).unwrap();
        let mut halves = vec![0u32; 8];
        let (left, right) = halves.split_at_mut(4);
        let tasks: Vec<Box<dyn FnOnce() + Send + '_>> = vec![
            Box::new(|| left.iter_mut().for_each(|v| *v = 1)),
            Box::new(|| right.iter_mut().for_each(|v| *v = 2)),
        ];
        pool.run_all(tasks);
        assert_eq!(halves, [1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn a_helper_s_panic_reaches_the_caller_after_every_task_ended_and_the_pool_goes_on() {
        let pool = SpinPool::new(2, |i| format!("test-helper{i}")).unwrap();
        let finished = std::sync::atomic::AtomicU32::new(0);
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            let tasks: Vec<Box<dyn FnOnce() + Send + '_>> = vec![
                Box::new(|| {
                    finished.fetch_add(1, Ordering::SeqCst);
                }),
                Box::new(|| panic!("a task fails")),
                Box::new(|| {
                    thread::sleep(Duration::from_millis(20));
                    finished.fetch_add(1, Ordering::SeqCst);
                }),
            ];
            pool.run_all(tasks);
        }));
        assert!(caught.is_err());
        assert_eq!(
            finished.load(Ordering::SeqCst),
            2,
            "both other tasks ran to the end"
        );
        // The caller's own panic, too, waits for the helpers.
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            let tasks: Vec<Box<dyn FnOnce() + Send + '_>> = vec![
                Box::new(|| panic!("the caller's task fails")),
                Box::new(|| {
                    thread::sleep(Duration::from_millis(20));
                    finished.fetch_add(1, Ordering::SeqCst);
                }),
            ];
            pool.run_all(tasks);
        }));
        assert!(caught.is_err());
        assert_eq!(finished.load(Ordering::SeqCst), 3);
        let tasks: Vec<Box<dyn FnOnce() -> i32 + Send>> =
            vec![Box::new(|| 1), Box::new(|| 2), Box::new(|| 3)];
        assert_eq!(pool.run_all(tasks), vec![1, 2, 3]);
    }
}
