//! The inference threads: a fixed set of OS threads that run forward passes in arrival order,
//! so model computation never runs on the async executor's threads.
//!
//! A fixed pool rather than `spawn_blocking`: under load, tokio's blocking pool grows a thread
//! per concurrent request, and on a machine with few cores the kernel then time-slices dozens
//! of runnable threads, which shows up as context switches and long tail latencies. One thread
//! per core, fed from one FIFO queue, keeps every core busy and each request's wait bounded by
//! the work queued ahead of it (itself bounded by the server's concurrency limit).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug)]
pub struct InferencePool {
    queue: Sender<Job>,
    threads: usize,
}

/// The work was lost: its thread panicked or the pool is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

impl InferencePool {
    /// Starts `threads` inference threads (0: one per CPU available to this process).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        Self::named(threads, "inference")
    }

    /// As [`InferencePool::new`], with threads named `<name>-<index>`.
    pub fn named(threads: usize, name: &str) -> std::io::Result<Self> {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, usize::from) } else { threads };
        let (queue, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new().name(format!("{name}-{index}")).spawn(move || worker(&receiver))?;
        }
        Ok(Self { queue, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `work` and resolves to its result once an inference thread has run it. A panic in
    /// `work` is caught (the thread lives on) and reported as [`Lost`].
    pub fn run<T, F>(&self, work: F) -> impl Future<Output = Result<T, Lost>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if let Ok(result) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                let _ = sender.send(result);
            }
        });
        let queued = self.queue.send(job).is_ok();
        async move {
            if !queued {
                return Err(Lost);
            }
            receiver.await.map_err(|_| Lost)
        }
    }
}

/// Runs `work` on the calling thread, catching a panic as [`InferencePool::run`] does: for work
/// too small to be worth a hand-off to an inference thread.
pub fn run_here<T>(work: impl FnOnce() -> T) -> Result<T, Lost> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|_| Lost)
}

fn worker(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let Ok(queue) = receiver.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return, // the pool was dropped
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_off_the_calling_thread_and_survives_a_panic() {
        let pool = InferencePool::new(2).expect("threads start");
        assert_eq!(pool.threads(), 2);
        let caller = std::thread::current().id();
        let (name, id) = pool
            .run(|| (std::thread::current().name().map(str::to_string), std::thread::current().id()))
            .await
            .expect("runs");
        assert!(name.is_some_and(|n| n.starts_with("inference-")));
        assert_ne!(id, caller);
        assert_eq!(pool.run(|| -> u8 { panic!("a failing forward pass") }).await, Err(Lost));
        // Both threads are still there to take work.
        let results: Vec<_> = (0..8u32).map(|i| pool.run(move || i * 2)).collect();
        let mut total = 0;
        for result in results {
            total += result.await.expect("runs after a panic");
        }
        assert_eq!(total, 56);
    }

    #[test]
    fn run_here_runs_on_the_calling_thread_and_catches_a_panic() {
        let caller = std::thread::current().id();
        assert_eq!(run_here(|| std::thread::current().id()), Ok(caller));
        assert_eq!(run_here(|| -> u8 { panic!("a failing forward pass") }), Err(Lost));
    }

    #[test]
    fn zero_threads_means_one_per_cpu() {
        let pool = InferencePool::new(0).expect("threads start");
        assert_eq!(pool.threads(), std::thread::available_parallelism().map_or(1, usize::from));
    }
}
