//! Publishing the job's status while the agent works.
//!
//! The controller decides from this document whether the instance is alive,
//! how far the backup got and how it ended, so the reporter has three
//! duties with different guarantees:
//!
//! - **phase changes** are written at once, retried with jittered backoff
//!   when SSM throttles (for [`PHASE_PATIENCE`]), and a failure is logged
//!   but does not stop the backup;
//! - **progress** (byte counters) rides on a heartbeat written every
//!   heartbeat interval (never more often than [`MIN_PROGRESS_GAP`]),
//!   stretched by a random quarter at most so that agents started together
//!   do not write together: SSM throttles `PutParameter` per account, all
//!   instances at once. A failed heartbeat is logged and forgotten;
//! - **the final status** (`succeeded`/`failed`) is retried for minutes
//!   ([`FINAL_PATIENCE`]): it is what the controller waits for; its failure
//!   is returned, so the agent exits non-zero.
//!
//! Writes are serialised by one lock, so a slow heartbeat can never land
//! after (and overwrite) a newer phase.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::schema::{Phase, Status};
use crate::status_store::{throttle_backoff, StatusError, StatusStore};

/// Progress-only writes are never closer together than this.
pub const MIN_PROGRESS_GAP: Duration = Duration::from_secs(2);

/// Progress is published at least this often, even with a long heartbeat
/// interval, so an operator's progress bar moves.
const MAX_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// How long a throttled phase change is retried.
pub const PHASE_PATIENCE: Duration = Duration::from_secs(20);

/// How long a throttled final status is retried.
pub const FINAL_PATIENCE: Duration = Duration::from_secs(300);

/// The first wait after a throttled write; it doubles on each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Byte counters the pipeline stages bump and the reporter publishes.
#[derive(Debug, Default, Clone)]
pub struct TransferCounters {
    /// Plaintext bytes read from the dump tool.
    pub plaintext_bytes: Arc<AtomicU64>,
    /// Ciphertext bytes in parts S3 has acknowledged.
    pub uploaded_bytes: Arc<AtomicU64>,
    /// Objects stored completely.
    pub objects_done: Arc<AtomicU64>,
    /// What the agent is doing now (e.g. `uploading shop.orders`),
    /// published as the status message until the job ends.
    activity: Arc<std::sync::Mutex<String>>,
}

impl TransferCounters {
    /// Counters that go on from those `status` published: for a report
    /// written over an earlier agent's progress, which must not zero it.
    pub fn resumed(status: &Status) -> TransferCounters {
        let counters = TransferCounters::default();
        counters
            .plaintext_bytes
            .store(status.bytes_read, Ordering::Relaxed);
        counters
            .uploaded_bytes
            .store(status.bytes_uploaded, Ordering::Relaxed);
        counters
            .objects_done
            .store(status.objects_done, Ordering::Relaxed);
        counters
    }

    pub fn set_activity(&self, activity: &str) {
        let mut current = self
            .activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        activity.clone_into(&mut current);
    }

    fn activity(&self) -> String {
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// When the reporter writes.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Gap after the last write at which the heartbeat writes progress.
    progress_interval: Duration,
    /// First backoff after a throttled write.
    first_backoff: Duration,
    /// How long a phase change, and the final status, are retried.
    phase_patience: Duration,
    final_patience: Duration,
}

impl Timing {
    /// The gap before the next heartbeat: the progress interval stretched
    /// by a random factor in [1, 1.25), never shorter than the interval.
    fn heartbeat_gap(&self) -> Duration {
        self.progress_interval
            .mul_f64(rand::random_range(1.0..1.25))
    }
}

/// Publishes one job's status document.
pub struct StatusReporter<S> {
    store: S,
    parameter: String,
    counters: TransferCounters,
    timing: Timing,
    state: Mutex<ReporterState>,
}

struct ReporterState {
    status: Status,
    last_write: Instant,
}

impl<S: StatusStore> StatusReporter<S> {
    /// A reporter for `parameter`, continuing from `initial` (the document
    /// the controller wrote), heartbeating within `heartbeat_interval`.
    pub fn new(
        store: S,
        parameter: &str,
        initial: Status,
        heartbeat_interval: Duration,
        counters: TransferCounters,
    ) -> Self {
        let timing = Timing {
            progress_interval: heartbeat_interval.clamp(MIN_PROGRESS_GAP, MAX_PROGRESS_INTERVAL),
            first_backoff: FIRST_BACKOFF,
            phase_patience: PHASE_PATIENCE,
            final_patience: FINAL_PATIENCE,
        };
        Self::with_timing(store, parameter, initial, counters, timing)
    }

    fn with_timing(
        store: S,
        parameter: &str,
        initial: Status,
        counters: TransferCounters,
        timing: Timing,
    ) -> Self {
        StatusReporter {
            store,
            parameter: parameter.to_owned(),
            counters,
            timing,
            state: Mutex::new(ReporterState {
                status: initial,
                last_write: Instant::now(),
            }),
        }
    }

    /// Changes the document without writing it; the change goes out with
    /// the next write.
    pub async fn amend(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.state.lock().await.status);
    }

    /// Moves to `phase` and writes it now. Not being able to say so is
    /// logged, not fatal: the backup itself is still good.
    pub async fn enter_phase(&self, phase: Phase) {
        let mut state = self.state.lock().await;
        state.status.phase = phase;
        if self.ended_elsewhere(&state.status).await.is_some() {
            return;
        }
        if let Err(err) = self
            .write_with_retry(&mut state, self.timing.phase_patience)
            .await
        {
            tracing::warn!("could not publish phase {}: {err}", phase.as_str());
        }
    }

    /// Writes progress whenever a jittered [`Timing::progress_interval`]
    /// has passed since the last write of any kind. Never returns: run it
    /// alongside the work and drop it when the work is done.
    pub async fn heartbeat(&self) -> Infallible {
        loop {
            let gap = self.timing.heartbeat_gap();
            let due = self.state.lock().await.last_write + gap;
            tokio::time::sleep_until(due).await;
            let mut state = self.state.lock().await;
            if state.last_write + gap > Instant::now() {
                continue; // a phase change was written meanwhile
            }
            if self.ended_elsewhere(&state.status).await.is_some() {
                drop(state);
                return std::future::pending().await;
            }
            self.snapshot(&mut state.status);
            state.last_write = Instant::now();
            if let Err(err) = self.store.write(&self.parameter, &state.status).await {
                tracing::warn!("could not publish progress: {err}");
            }
        }
    }

    /// The stored document, when it says the job is over or belongs to
    /// another job: the controller ended it (Ctrl-C, a timeout,
    /// `terminate`, its instance gone) and its word must stand, not be
    /// written over by progress or by the agent's own ending (which may
    /// only be the consequence: an upload the controller aborted). Checked
    /// before every write; a document that cannot be read does not stop
    /// the reporting.
    async fn ended_elsewhere(&self, ours: &Status) -> Option<Status> {
        match self.store.read(&self.parameter).await {
            Ok(Some(stored)) if stored.job_id != ours.job_id || stored.phase.is_terminal() => {
                tracing::warn!(
                    "the status parameter says {} is {}: the controller has ended the job; nothing more is published",
                    stored.job_id,
                    stored.phase.as_str()
                );
                Some(stored)
            }
            _ => None,
        }
    }

    /// Writes the terminal status, retrying for [`Timing::final_patience`]
    /// when throttled; an error here means the controller will not learn
    /// the outcome from the status (it still finds a stored manifest).
    /// When the controller has ended the job already, its verdict stands
    /// and is returned instead.
    pub async fn finish(
        &self,
        phase: Phase,
        change: impl FnOnce(&mut Status),
    ) -> Result<Status, StatusError> {
        debug_assert!(phase.is_terminal());
        let mut state = self.state.lock().await;
        if let Some(verdict) = self.ended_elsewhere(&state.status).await {
            return Ok(verdict);
        }
        state.status.phase = phase;
        change(&mut state.status);
        self.write_with_retry(&mut state, self.timing.final_patience)
            .await?;
        Ok(state.status.clone())
    }

    fn snapshot(&self, status: &mut Status) {
        status.bytes_read = self.counters.plaintext_bytes.load(Ordering::Relaxed);
        status.bytes_uploaded = self.counters.uploaded_bytes.load(Ordering::Relaxed);
        status.objects_done = self.counters.objects_done.load(Ordering::Relaxed);
        if !status.phase.is_terminal() {
            let activity = self.counters.activity();
            if !activity.is_empty() {
                status.set_message(&activity);
            }
        }
        status.updated_at = OffsetDateTime::now_utc();
    }

    async fn write_with_retry(
        &self,
        state: &mut ReporterState,
        patience: Duration,
    ) -> Result<(), StatusError> {
        let deadline = Instant::now() + patience;
        let mut attempt = 1;
        loop {
            self.snapshot(&mut state.status);
            state.last_write = Instant::now();
            match self.store.write(&self.parameter, &state.status).await {
                Err(StatusError::Throttled { .. }) if Instant::now() < deadline => {
                    let backoff = throttle_backoff(self.timing.first_backoff, attempt);
                    tracing::debug!("status write throttled; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_store::memory::MemoryStatusStore;
    use std::sync::atomic::AtomicU32;

    const PARAMETER: &str = "/backup-cloud/jobs/test";

    fn fast_timing() -> Timing {
        Timing {
            progress_interval: Duration::from_millis(200),
            first_backoff: Duration::from_millis(5),
            phase_patience: Duration::from_millis(100),
            final_patience: Duration::from_millis(300),
        }
    }

    fn reporter<S: StatusStore>(store: S) -> StatusReporter<S> {
        StatusReporter::with_timing(
            store,
            PARAMETER,
            Status::new("job-1", Phase::Booting),
            TransferCounters::default(),
            fast_timing(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_the_controller_ended_is_not_written_over() {
        let reporter = reporter(MemoryStatusStore::default());
        let mut ended = Status::new("job-1", Phase::Failed);
        ended.set_message("interrupted by the operator");
        reporter.store.write(PARAMETER, &ended).await.unwrap();
        // fifty heartbeat intervals
        let _ = tokio::time::timeout(Duration::from_secs(10), reporter.heartbeat()).await;
        reporter.enter_phase(Phase::Uploading).await;
        let verdict = reporter
            .finish(Phase::Failed, |s| s.set_message("NoSuchUpload"))
            .await
            .unwrap();
        assert_eq!(verdict.message, "interrupted by the operator");
        let writes = reporter.store.writes.lock().unwrap().clone();
        assert_eq!(writes.len(), 1, "only the controller's: {writes:?}");
        let stored = reporter.store.read(PARAMETER).await.unwrap().unwrap();
        assert_eq!(stored.phase, Phase::Failed);
    }

    /// Bug: a failure reported over a dead agent's status zeroed the
    /// progress it had published.
    #[tokio::test(start_paused = true)]
    async fn a_report_over_earlier_progress_keeps_it() {
        let mut earlier = Status::new("j", Phase::Dumping);
        earlier.bytes_read = 7 << 30;
        earlier.bytes_uploaded = 1 << 30;
        earlier.objects_done = 3;
        let reporter = StatusReporter::new(
            MemoryStatusStore::default(),
            PARAMETER,
            earlier.clone(),
            Duration::from_secs(60),
            TransferCounters::resumed(&earlier),
        );
        reporter
            .finish(Phase::Failed, |status| status.set_message("died"))
            .await
            .unwrap();
        let stored = reporter.store.read(PARAMETER).await.unwrap().unwrap();
        assert_eq!(
            (
                stored.bytes_read,
                stored.bytes_uploaded,
                stored.objects_done
            ),
            (7 << 30, 1 << 30, 3)
        );
    }

    #[test]
    fn progress_interval_respects_the_minimum_gap_and_the_heartbeat() {
        let counters = TransferCounters::default();
        let initial = Status::new("j", Phase::Booting);
        let short = StatusReporter::new(
            MemoryStatusStore::default(),
            PARAMETER,
            initial.clone(),
            Duration::from_millis(100),
            counters.clone(),
        );
        assert_eq!(short.timing.progress_interval, MIN_PROGRESS_GAP);
        let long = StatusReporter::new(
            MemoryStatusStore::default(),
            PARAMETER,
            initial,
            Duration::from_secs(60),
            counters,
        );
        assert!(long.timing.progress_interval <= Duration::from_secs(60));
        assert!(long.timing.progress_interval >= MIN_PROGRESS_GAP);
    }

    /// A store that notes when, on tokio's clock, each write was made.
    #[derive(Default)]
    struct ClockedStore {
        times: std::sync::Mutex<Vec<Instant>>,
        inner: MemoryStatusStore,
    }

    impl StatusStore for ClockedStore {
        async fn read(&self, name: &str) -> Result<Option<Status>, StatusError> {
            self.inner.read(name).await
        }

        async fn write(&self, name: &str, status: &Status) -> Result<(), StatusError> {
            self.times.lock().unwrap().push(Instant::now());
            self.inner.write(name, status).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_writes_progress_no_more_often_than_the_interval() {
        let reporter = reporter(ClockedStore::default());
        reporter
            .counters
            .plaintext_bytes
            .store(1234, Ordering::Relaxed);
        let work = async {
            reporter.enter_phase(Phase::Dumping).await;
            tokio::time::sleep(Duration::from_millis(1100)).await;
        };
        tokio::select! {
            () = work => {}
            never = reporter.heartbeat() => match never {},
        }
        let writes = reporter.store.inner.writes.lock().unwrap().clone();
        // one phase write at 0, then a heartbeat every 200 to 250 ms
        // (jittered) on the paused clock: four or five of them in 1100 ms
        assert!(
            (5..=6).contains(&writes.len()),
            "unexpected number of writes: {writes:?}"
        );
        assert!(writes.iter().all(|s| s.phase == Phase::Dumping));
        assert_eq!(writes.last().unwrap().bytes_read, 1234);
        let times = reporter.store.times.lock().unwrap().clone();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(200) && gap <= Duration::from_millis(250),
                "writes {gap:?} apart"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_phase_change_postpones_the_next_heartbeat() {
        let reporter = reporter(MemoryStatusStore::default());
        let work = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            reporter.enter_phase(Phase::Dumping).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        tokio::select! {
            () = work => {}
            never = reporter.heartbeat() => match never {},
        }
        // the heartbeat due at 200 ms was pushed to 350 ms by the phase write
        let writes = reporter.store.writes.lock().unwrap().clone();
        assert_eq!(writes.len(), 1, "{writes:?}");
    }

    /// A store that throttles the first `throttles` writes, then accepts.
    struct ThrottlingStore {
        throttles: AtomicU32,
        inner: MemoryStatusStore,
    }

    impl StatusStore for ThrottlingStore {
        async fn read(&self, name: &str) -> Result<Option<Status>, StatusError> {
            self.inner.read(name).await
        }

        async fn write(&self, name: &str, status: &Status) -> Result<(), StatusError> {
            if self.throttles.load(Ordering::SeqCst) > 0 {
                self.throttles.fetch_sub(1, Ordering::SeqCst);
                return Err(StatusError::Throttled {
                    name: name.to_owned(),
                });
            }
            self.inner.write(name, status).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_status_is_retried_when_throttled() {
        let store = ThrottlingStore {
            throttles: AtomicU32::new(3),
            inner: MemoryStatusStore::default(),
        };
        let reporter = reporter(store);
        let status = reporter
            .finish(Phase::Failed, |s| s.set_message("pg_dump failed"))
            .await
            .expect("written after retries");
        assert_eq!(status.phase, Phase::Failed);
        let stored = reporter.store.inner.documents.lock().unwrap()[PARAMETER].clone();
        assert_eq!(stored.message, "pg_dump failed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_status_outlasts_a_long_throttle() {
        // Ten refusals in a row: ten agents finishing together against
        // the account's ~3 writes per second.
        let store = ThrottlingStore {
            throttles: AtomicU32::new(10),
            inner: MemoryStatusStore::default(),
        };
        let timing = Timing {
            first_backoff: Duration::from_millis(1),
            final_patience: Duration::from_secs(10),
            ..fast_timing()
        };
        let reporter = StatusReporter::with_timing(
            store,
            PARAMETER,
            Status::new("job-1", Phase::Uploading),
            TransferCounters::default(),
            timing,
        );
        reporter
            .finish(Phase::Succeeded, |_| {})
            .await
            .expect("written once the throttle lets it through");
        assert_eq!(reporter.store.throttles.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn heartbeats_are_spread_but_never_closer_than_the_interval() {
        let timing = Timing {
            progress_interval: Duration::from_secs(4),
            ..fast_timing()
        };
        let gaps: std::collections::HashSet<Duration> =
            (0..50).map(|_| timing.heartbeat_gap()).collect();
        assert!(gaps.len() > 10, "jittered: {gaps:?}");
        for gap in gaps {
            assert!(
                gap >= Duration::from_secs(4) && gap < Duration::from_secs(5),
                "{gap:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_status_that_cannot_be_written_is_an_error() {
        let store = ThrottlingStore {
            throttles: AtomicU32::new(100),
            inner: MemoryStatusStore::default(),
        };
        let reporter = reporter(store);
        let err = reporter.finish(Phase::Succeeded, |_| {}).await.unwrap_err();
        assert!(matches!(err, StatusError::Throttled { .. }));
    }
}
