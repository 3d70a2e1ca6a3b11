//! The run's trace writes (steps and hook records). They are tracked, so the loop can wait
//! for them before it acts on the next reply and before the run ends; retried, because a
//! lost row is a side-effecting call missing from the trace; and a write that still fails
//! after its retries fails the run with `STORE_ERROR`, keeping what was written.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use leforge_core::StoreError;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Waits before the second, third and fourth attempt.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_millis(1000),
];

#[derive(Clone, Default)]
pub(crate) struct Writes {
    tracker: TaskTracker,
    /// The first write that could not be made, as the run's error message.
    failed: Arc<OnceLock<String>>,
}

impl Writes {
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Waits for every write spawned so far.
    pub(crate) async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }

    /// Why the run must fail: a trace write was lost.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed.get().cloned()
    }

    fn fail(&self, message: String) {
        let _ = self.failed.set(message);
    }

    /// Runs `op` until it succeeds, retrying failures that may pass (a database error) with
    /// backoff. A final failure is logged and recorded for the run to fail on.
    pub(crate) async fn write<T, F, Fut>(&self, run_id: Uuid, what: &str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    let transient = matches!(e, StoreError::Database(_));
                    if transient && attempt < BACKOFF.len() {
                        tracing::warn!(run_id = %run_id, error = %e, attempt = attempt + 1, "could not persist {what}; retrying");
                        tokio::time::sleep(BACKOFF[attempt]).await;
                        attempt += 1;
                        continue;
                    }
                    tracing::error!(run_id = %run_id, error = %e, "could not persist {what}");
                    self.fail(format!(
                        "the run's trace could not be stored ({what}): the run was stopped so that no \
                         call goes unrecorded; what was stored before is kept"
                    ));
                    return None;
                }
            }
        }
    }
}
