//! Whether the collector answers, as the worker sees it: what the gate's
//! `fail_closed` rule reads, and what an outage is logged as.

use std::time::{Duration, Instant};

use super::Worker;
use crate::export::diagnose::{cause, probe, Answer};
use crate::export::{Failure, WhenFull};

/// The probe may not hold a shutdown past its deadline, nor anything else
/// long (the endpoint is asked once per distinct failure).
const PROBE_BOUND: Duration = Duration::from_secs(2);

/// What the transport says when an attempt outlives the shutdown deadline:
/// not a cause, so it neither replaces the last error nor starts an outage.
pub(super) const SHUTDOWN_DEADLINE: &str = "shutdown deadline passed";

impl Worker {
    /// An attempt failed and will be retried.
    pub(super) fn delivery_failed(&mut self, f: &Failure, shutdown: Option<Instant>) {
        self.status().add_retries(1);
        if f.message == SHUTDOWN_DEADLINE {
            return;
        }
        // A throttle with a hint is the collector answering "later".
        self.shared.set_collector_down(f.retry_after.is_none());
        let uri = self.transport.uri().clone();
        let protocol = self.transport.protocol();
        // An unclear or late answer (a loaded machine) is asked again at
        // the next failure; a clear one holds while the message does.
        let mut conclusive = true;
        let described = if self.outage.needs_diagnosis(&f.message) {
            let mut bound = PROBE_BOUND;
            if let Some(deadline) = shutdown {
                bound = bound.min(deadline.saturating_duration_since(Instant::now()));
            }
            let answer = match self
                .runtime
                .block_on(async { tokio::time::timeout(bound, probe(&uri)).await })
            {
                Ok(answer) => answer,
                Err(_) => Some(Answer::Unclear),
            };
            conclusive = answer != Some(Answer::Unclear);
            let cause = cause(protocol, answer.as_ref(), &f.message);
            let label = match protocol {
                crate::export::Protocol::Grpc => "OTLP/gRPC",
                crate::export::Protocol::HttpProtobuf => "OTLP/HTTP",
            };
            if cause == f.message {
                format!("{label} to {uri}: {cause}")
            } else {
                format!("{label} to {uri}: {cause} ({})", f.message)
            }
        } else {
            self.outage.described.clone().unwrap_or_default()
        };
        let where_ = if let Some(dir) = &self.settings.spool_dir {
            format!(
                "Records wait in memory, then in the spool {}.",
                dir.display()
            )
        } else {
            let gate = match self.shared.when_full {
                WhenFull::Drop => "",
                _ => ", and the gate refuses privileged actions meanwhile",
            };
            format!(
                "Records wait in memory only: with no spool they are lost if the application \
                 exits before the collector answers{gate}."
            )
        };
        if let Some(line) = self.outage.failed(&f.message, described.clone(), &where_) {
            eprintln!("{line}");
        }
        if !conclusive {
            self.outage.diagnose_again();
        }
        self.status().set_last_error(Some(described));
    }

    /// The collector answered (acknowledged or refused).
    pub(super) fn delivery_answered(&mut self) {
        self.backoff = Duration::ZERO;
        self.status().set_last_error(None);
        self.shared.set_collector_down(false);
        if let Some(line) = self.outage.resumed(self.transport.uri()) {
            eprintln!("{line}");
        }
    }
}
