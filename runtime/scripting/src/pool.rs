//! The threads hooks run on. A dedicated pool rather than `spawn_blocking`: Rhai evaluates
//! recursively, and a script at the call-depth limit needs more stack than tokio's blocking
//! threads have in a debug build; a stack overflow would abort the whole server.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// Starts `workers` threads. They exit when the pool is dropped and the queue drains.
    pub fn start(workers: usize, stack_bytes: usize) -> std::io::Result<Pool> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..workers.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("leforge-hook-{n}"))
                .stack_size(stack_bytes)
                .spawn(move || work(&queue))?;
        }
        Ok(Pool { jobs })
    }

    /// Runs `f` on a worker and waits for it without blocking the async executor. `None` if
    /// the job panicked or the pool is gone.
    pub async fn run<T, F>(&self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panicking script helper must cost one call, not a worker.
            if let Ok(value) = catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(value);
            }
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take a job, never while running it.
        let next = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}
