//! Group commit, pipelined: while one group's fsync runs on the sync
//! thread, the writer deduplicates the next group and appends its frames.
//!
//! Every answer still waits for the fsync of its own group: a group is
//! answered (and its rows enter the unsealed buffer) only once the fsync
//! that started after its last frame was appended has returned. An fsync
//! covers at least what was written before it started; frames appended
//! while it runs get the next one. If an fsync fails, its group and the
//! one appended behind it are both withdrawn (cut from the WAL, their ids
//! forgotten, answered with the error): nothing of either is acknowledged.

use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use audit_schema::Stamp;

use super::writer::Shutdown;
use super::writer::Writer;
use super::{storage, Batch, Committed, IngestError, Job, Msg};
use crate::metrics::Metrics;
use crate::now_ns;
use crate::wal::{Frame, SyncHandle};

/// The WAL's fsyncs, on a thread of their own.
pub(super) struct Syncer {
    tx: SyncSender<SyncHandle>,
    rx: Receiver<Synced>,
}

/// What an fsync returned, and how long it took.
type Synced = (io::Result<()>, Duration);

/// How often the writer looks whether the fsync under way has returned
/// while no request arrives.
const POLL: Duration = Duration::from_micros(100);

impl Syncer {
    pub(super) fn start() -> io::Result<Syncer> {
        let (tx, requests) = mpsc::sync_channel::<SyncHandle>(1);
        let (results, rx) = mpsc::sync_channel(1);
        // Ends when the writer drops its end.
        std::thread::Builder::new()
            .name("audit-wal-sync".into())
            .spawn(move || {
                while let Ok(handle) = requests.recv() {
                    let started = Instant::now();
                    let result = handle.sync();
                    if results.send((result, started.elapsed())).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Syncer { tx, rx })
    }

    /// Starts an fsync of what `handle`'s segment holds now.
    fn begin(&self, handle: SyncHandle) -> io::Result<()> {
        self.tx
            .send(handle)
            .map_err(|_| io::Error::other("WAL sync thread stopped"))
    }

    /// The result of the fsync begun last, if it has returned.
    fn try_result(&self) -> Option<Synced> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(self.wait()),
        }
    }

    /// The result of the fsync begun last.
    fn wait(&self) -> Synced {
        self.rx.recv().unwrap_or_else(|_| {
            (
                Err(io::Error::other("WAL sync thread stopped")),
                Duration::ZERO,
            )
        })
    }
}

/// One request of a group: which of its rows are new (not duplicates).
struct Member {
    job: Job,
    keep_actions: Vec<usize>,
    keep_violations: Vec<usize>,
    duplicates: usize,
    /// The stamp of its first new row (seq, then one more per row) and of
    /// all of them (receive time), as its WAL frame has them.
    first_seq: u64,
    received_ns: i64,
}

/// Requests whose frames are in the WAL, not yet known durable.
pub(super) struct Group {
    members: Vec<Member>,
    /// WAL length and next seq before the group: where a withdrawal cuts
    /// back to.
    start_len: u64,
    start_seq: u64,
    received_ns: i64,
    rows: usize,
}

impl Group {
    /// Rows it will add to the unsealed buffer.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Adds `later`, appended right after this group.
    fn absorb(&mut self, later: Group) {
        self.members.extend(later.members);
        self.rows += later.rows;
    }
}

impl Writer {
    /// Deduplicates `jobs` and appends their frames (not synced). `None`
    /// when nothing was appended: every job is answered already.
    /// `in_flight` rows (a group being synced) count towards
    /// `max_buffered_rows` as if buffered.
    pub(super) fn prepare(&mut self, jobs: Vec<Job>, in_flight: usize) -> Option<Group> {
        if jobs.is_empty() {
            return None;
        }
        if self.wal_broken || self.commit_unknown {
            Metrics::set(&self.metrics.store_failing, 1);
            let why = match self.wal_broken {
                true => "WAL unusable after a failed write; restart the collector",
                false => super::seal::COMMIT_UNKNOWN,
            };
            for job in jobs {
                answer(job, Err(IngestError::Storage(why.into())));
            }
            return None;
        }
        if self.buffered() + in_flight >= self.cfg.max_buffered_rows {
            Metrics::add(&self.metrics.overloaded_total, jobs.len() as u64);
            for job in jobs {
                answer(job, Err(IngestError::Overloaded));
            }
            return None;
        }
        self.prune_seen();
        let mut group = Group {
            members: Vec::with_capacity(jobs.len()),
            start_len: self.wal.len(),
            start_seq: self.next_seq,
            received_ns: now_ns(),
            rows: 0,
        };
        let mut result = Ok(());
        for job in jobs {
            let (keep_actions, dup_a) = self.new_ids(&job.batch, false);
            let (keep_violations, dup_v) = self.new_ids(&job.batch, true);
            let stored = keep_actions.len() + keep_violations.len();
            if result.is_ok() && stored > 0 {
                result = Frame::encode_rows(
                    (&job.actions, &keep_actions),
                    (&job.violations, &keep_violations),
                    group.received_ns,
                    self.next_seq,
                )
                .map_err(|e| storage("encode WAL frame", e))
                .and_then(|b| self.wal.append(&b).map_err(|e| storage("WAL append", e)));
            }
            self.next_seq += stored as u64;
            group.rows += stored;
            group.members.push(Member {
                job,
                keep_actions,
                keep_violations,
                duplicates: dup_a + dup_v,
                first_seq: self.next_seq - stored as u64,
                received_ns: group.received_ns,
            });
        }
        match result {
            Ok(()) => Some(group),
            Err(e) => {
                self.withdraw(group, &e);
                None
            }
        }
    }

    /// Indices of the rows of one dataset of `batch` not stored within the
    /// window (nor earlier in the batch), now remembered as stored; and how
    /// many were duplicates.
    fn new_ids(&mut self, batch: &Batch, violations: bool) -> (Vec<usize>, usize) {
        let ids: Vec<&str> = if violations {
            batch
                .violations
                .iter()
                .map(|r| r.event_id.as_str())
                .collect()
        } else {
            batch.actions.iter().map(|r| r.event_id.as_str()).collect()
        };
        let mut keep = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if self.is_duplicate(violations, id) {
                continue;
            }
            self.seen(violations).insert((*id).to_owned());
            keep.push(i);
        }
        let duplicates = ids.len() - keep.len();
        (keep, duplicates)
    }

    /// Starts the fsync of everything appended so far; `group` is what it
    /// commits. On failure the group is withdrawn and `None` returned.
    pub(super) fn begin_sync(&mut self, syncer: &Syncer, group: Group) -> Option<Group> {
        match self.wal.sync_handle().and_then(|h| syncer.begin(h)) {
            Ok(()) => Some(group),
            Err(e) => {
                self.withdraw(group, &storage("WAL fsync", e));
                None
            }
        }
    }

    /// While `syncing`'s fsync runs: takes the requests that arrive and
    /// appends them as the next group, until the fsync returns (or a
    /// shutdown comes, or every sender is gone); then settles `syncing`.
    /// Returns the next group (not synced yet) and the shutdown, if any.
    pub(super) fn append_while_syncing(
        &mut self,
        rx: &Receiver<Msg>,
        syncer: &Syncer,
        syncing: Group,
    ) -> (Option<Group>, Option<Shutdown>) {
        let mut next: Option<Group> = None;
        let (synced, shutdown) = loop {
            if let Some(synced) = syncer.try_result() {
                break (synced, None);
            }
            match rx.recv_timeout(POLL) {
                Ok(first) => {
                    let (jobs, shutdown) = self.gather(first, rx);
                    let in_flight = syncing.rows + next.as_ref().map_or(0, Group::rows);
                    if let Some(g) = self.prepare(jobs, in_flight) {
                        next = Some(match next {
                            Some(mut n) => {
                                n.absorb(g);
                                n
                            }
                            None => g,
                        });
                    }
                    if shutdown.is_some() {
                        break (syncer.wait(), shutdown);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break (syncer.wait(), None),
            }
        };
        (self.settle(syncing, synced, next), shutdown)
    }

    /// Waits for the fsync begun last, then settles `group` by its result.
    pub(super) fn settle_now(&mut self, syncer: &Syncer, group: Group) {
        let synced = syncer.wait();
        self.settle(group, synced, None);
    }

    /// Answers `group` by the result of its fsync: its rows go into the
    /// unsealed buffer and each request gets `Ok`, or, if the fsync
    /// failed, it is withdrawn. `behind` is the group appended after it,
    /// if any; it is withdrawn too when this one is (its frames are cut
    /// with it), and handed back otherwise.
    fn settle(&mut self, group: Group, synced: Synced, behind: Option<Group>) -> Option<Group> {
        let (synced, took) = synced;
        self.metrics.wal_fsync_seconds.observe(took);
        Metrics::add(&self.metrics.wal_fsyncs_total, 1);
        if let Err(e) = synced {
            let e = storage("WAL fsync", e);
            // Later first, so that each cut shortens the segment.
            if let Some(b) = behind {
                self.withdraw(b, &e);
            }
            self.withdraw(group, &e);
            return None;
        }
        self.commit(group);
        behind
    }

    /// `group` is durable: its rows go into the unsealed buffer, then the
    /// answers.
    fn commit(&mut self, group: Group) {
        Metrics::set(&self.metrics.store_failing, 0);
        let mut answers = Vec::with_capacity(group.members.len());
        for m in group.members {
            let batch = &m.job.batch;
            // The stamps its frame has (a group may hold requests appended
            // at different times, see `absorb`).
            let mut seq = m.first_seq;
            let mut stamp = || {
                seq += 1;
                Stamp {
                    received_time_ns: m.received_ns,
                    seq: seq - 1,
                }
            };
            for &i in &m.keep_actions {
                self.actions.push(&batch.actions[i], stamp());
            }
            for &i in &m.keep_violations {
                self.violations.push(&batch.violations[i], stamp());
            }
            Metrics::add(
                &self.metrics.actions_stored_total,
                m.keep_actions.len() as u64,
            );
            Metrics::add(
                &self.metrics.violations_stored_total,
                m.keep_violations.len() as u64,
            );
            Metrics::add(&self.metrics.duplicates_total, m.duplicates as u64);
            let stored = m.keep_actions.len() + m.keep_violations.len();
            let c = Committed {
                stored,
                duplicates: m.duplicates,
            };
            answers.push((m.job, c));
        }
        Metrics::add(
            &self.metrics.wal_bytes_total,
            self.wal.len().saturating_sub(group.start_len),
        );
        if self.oldest.is_none() && self.buffered() > 0 {
            self.oldest = Some(Instant::now());
        }
        Metrics::set(&self.metrics.buffered_rows, self.buffered() as u64);
        for (job, c) in answers {
            answer(job, Ok(c));
        }
    }

    /// Takes the whole group back: none of it is acknowledged.
    fn withdraw(&mut self, group: Group, e: &IngestError) {
        if self.wal.truncate(group.start_len).is_err() {
            self.wal_broken = true;
        }
        self.next_seq = group.start_seq;
        Metrics::add(
            &self.metrics.storage_errors_total,
            group.members.len() as u64,
        );
        Metrics::set(&self.metrics.store_failing, 1);
        tracing::error!(error = %e, "WAL commit failed; clients will retry");
        for m in group.members {
            let batch = &m.job.batch;
            for &i in &m.keep_actions {
                self.actions_seen.forget(&batch.actions[i].event_id);
            }
            for &i in &m.keep_violations {
                self.violations_seen.forget(&batch.violations[i].event_id);
            }
            answer(m.job, Err(IngestError::Storage(e.to_string())));
        }
    }
}

/// Answers a request, handing its batch back to be freed by the receiver.
fn answer(job: Job, result: Result<Committed, IngestError>) {
    let _ = job.done.send((result, job.batch));
}
