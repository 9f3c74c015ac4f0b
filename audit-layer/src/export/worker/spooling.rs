//! Spool mode: while the collector is unreachable, batches and then
//! everything queued behind them go to the disk spool, and are sent from
//! there, oldest segment first, when it answers again.

use std::ops::Range;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::resource::v1::Resource;

use super::deliver::Sent;
use super::Worker;
use crate::export::encoded::{Encoded, RequestHead};
use crate::export::Item;

impl Worker {
    /// In spool mode: waits `d` before the next attempt, moving what the
    /// application queues meanwhile to the spool every `linger`, so that
    /// memory stays free while the spool has room.
    pub(super) fn wait_spooling(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            self.wait(left.min(self.settings.linger.max(Duration::from_millis(5))));
            self.spill_queue();
            if Instant::now() >= until || self.shutdown().is_some() {
                return;
            }
        }
    }

    /// Writes the `range` of `batch` to the spool; false when there is
    /// none or it is full.
    pub(super) fn spill(&mut self, batch: &Encoded, range: Range<usize>) -> bool {
        let Some(spool) = self.spool.as_mut() else {
            return false;
        };
        let kept = match spool.append(&self.resource, batch, range) {
            Ok(true) => {
                let (r, b) = (spool.records(), spool.bytes());
                self.status().set_spool(r, b);
                true
            }
            Ok(false) => false,
            Err(e) => {
                if !self.warned_spool {
                    self.warned_spool = true;
                    eprintln!("audit-layer: cannot write to the spool: {e}");
                }
                false
            }
        };
        self.shared.set_spool_full(!kept);
        kept
    }

    /// In spool mode, moves what is queued in memory to the spool (while it
    /// has room), so that memory stays free and order is kept.
    pub(super) fn spill_queue(&mut self) {
        loop {
            let items: Vec<Item> = {
                let mut st = self.shared.lock();
                let n = st.items.len().min(self.settings.batch_size);
                if n == 0 {
                    return;
                }
                st.items.drain(..n).collect()
            };
            // Checked before they may be put back: a span is checked once.
            let items: Vec<Item> = items.into_iter().map(|i| i.checked(&*self.check)).collect();
            let mut batch = Encoded::with_capacity(items.len());
            for item in &items {
                batch.push_item(item);
            }
            if !self.spill(&batch, 0..batch.len()) {
                // No room: put them back at the front, in order.
                let mut st = self.shared.lock();
                for item in items.into_iter().rev() {
                    st.items.push_front(item);
                }
                return;
            }
            let mut st = self.shared.lock();
            st.accepted += items.iter().filter(|i| i.is_report()).count() as u64;
            self.status().set_queued(st.items.len() as u64);
            st.flush_requested &= !st.items.is_empty();
            drop(st);
            self.shared.progress.notify_all();
        }
    }

    pub(super) fn send_spool_head(&mut self, shutdown: Option<Instant>) -> Sent {
        let Some(spool) = self.spool.as_ref() else {
            return Sent::Done;
        };
        let batch = match spool.head() {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                eprintln!("audit-layer: cannot read the spool: {e}");
                let wait = self.next_backoff(None);
                return Sent::Retry { wait, done: 0 };
            }
            None => return Sent::Done,
        };
        // Counted once per segment, not at every read of a head that
        // waits for the collector.
        let done = match self.spool_head_done {
            Some(done) => done.min(batch.records.len()),
            None => {
                if batch.lost > 0 {
                    self.shared.losses.corrupt(self.status(), batch.lost);
                }
                0
            }
        };
        let n = batch.records.len() as u64;
        let head = if batch.resource == Resource::default() {
            self.head.clone()
        } else {
            RequestHead::new(&batch.resource)
        };
        let mut records = batch.records;
        records.drain_front(done);
        let sent = self.deliver(&head, &records, shutdown);
        match sent {
            Sent::Done => {
                self.spool_head_done = None;
                let spool = self.spool.as_mut().expect("spool");
                if let Err(e) = spool.pop_head() {
                    eprintln!("audit-layer: cannot remove a delivered spool segment: {e}");
                }
                let (r, b) = (spool.records(), spool.bytes());
                self.status().set_spool(r, b);
                self.shared.set_spool_full(false);
                self.resolved(n + batch.lost);
            }
            // The segment leaves the spool only whole; its settled records
            // are not sent again by this process (a restart resends them,
            // which the collector's deduplication absorbs).
            Sent::Retry { done: more, .. } => self.spool_head_done = Some(done + more),
        }
        sent
    }
}
