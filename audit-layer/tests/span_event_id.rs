//! `privileged_span!` carries its audit row's event id as a span field, so
//! the application's own `fmt` log shows the id an auditor will look up.

use std::io::Write;
use std::sync::{Arc, Mutex};

use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
use tracing_subscriber::layer::SubscriberExt;

/// A `fmt` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a `fmt` layer and the audit layer; returns the log and the rows.
fn logged(f: impl FnOnce()) -> (String, Vec<audit_layer::schema::AuditRecord>) {
    let sink = MemorySink::default();
    let (audit, _guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
    let buf = Buffer::default();
    let writer = buf.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || writer.clone());
    let subscriber = tracing_subscriber::registry().with(fmt).with(audit);
    tracing::subscriber::with_default(subscriber, f);
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (log, sink.records())
}

#[test]
fn the_fmt_log_shows_the_event_id_of_the_row() {
    let (log, rows) = logged(|| {
        let actor = Actor::agent("agt_7f3", "usr_alice");
        privileged_span!(&actor, "payments.transfer", target = "acct_42")
            .in_scope(|| tracing::info!("transferred"));
        privileged_span!(&actor, "payments.refund").in_scope(|| tracing::info!("refunded"));
    });
    assert_eq!(rows.len(), 2);
    for (row, line) in rows.iter().zip(log.lines()) {
        let shown = format!("event.id=\"{}\"", row.event_id);
        assert!(line.contains(&shown), "{shown} not in {line:?}");
        assert_eq!(line.matches("event.id=").count(), 1, "{line}");
    }
    assert_ne!(rows[0].event_id, rows[1].event_id);
}

#[test]
fn an_event_id_the_caller_names_is_kept_and_shown_once() {
    let (log, rows) = logged(|| {
        let actor = Actor::human("usr_alice");
        let id = "019a0000-0000-7000-8000-00000000abcd";
        privileged_span!(&actor, "users.update_role", event.id = id)
            .in_scope(|| tracing::info!("done"));
        // The wire name is an event id too, and so is one named after a value.
        privileged_span!(&actor, "users.invite", target = "x", audit.event.id = id)
            .in_scope(|| tracing::info!("done"));
    });
    assert!(
        rows.iter().all(|r| r.event_id.ends_with("abcd")),
        "{rows:?}"
    );
    for line in log.lines() {
        assert_eq!(line.matches("abcd").count(), 1, "{line}");
        assert_eq!(
            line.matches("event.id=").count(),
            1,
            "no second, fresh id: {line}"
        );
    }
}
