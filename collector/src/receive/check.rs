//! Checking a request's records against the rules: what is stored, what
//! is refused (each refused record by itself, with a violation row of its
//! own), and the OTLP answer that says so.

use audit_schema::limits::{clip, QUOTE_BYTES};
use audit_schema::otlp::Decoded;
use audit_schema::{wire, Field, Limits, Problem, Rejection, Rules, ViolationRecord};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};

use super::{read, Received};
use crate::auth::CLIENT_ATTR;
use crate::ingest::Batch;

/// Messages of more refused records than this are summarized.
const MAX_MESSAGES: usize = 10;

/// A request read and checked: what to store and what was refused.
#[derive(Debug, Default)]
pub struct Checked {
    /// Rows to store (including violations the collector found).
    pub batch: Batch,
    /// Records refused.
    pub refused: i64,
    /// Records refused, by reason (a fixed word, for metrics).
    pub refused_by: std::collections::BTreeMap<&'static str, u64>,
    /// One message per refused record, the first few.
    pub messages: Vec<String>,
}

pub(super) fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The id of the collector's violation row about a refused record: derived
/// from the refused record's own id (a UUIDv8 of its SHA-256), so that a
/// client resending the same refused record leaves one row, deduplicated
/// like any other; a record without an id gets a fresh one.
fn refusal_id(refused_event_id: &str) -> String {
    use sha2::Digest;
    if refused_event_id.trim().is_empty() {
        return new_event_id();
    }
    let digest = sha2::Sha256::digest(format!("audit-collector refusal\n{refused_event_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Longest refusal message per record in `partial_success`: reasons quote
/// at most a few bytes of any value, but many problems add up.
const MAX_MESSAGE_BYTES: usize = 1024;

/// Reads and checks every log record of a decoded request (see [`check_received`]).
pub fn check(
    req: ExportLogsServiceRequest,
    rules: &Rules,
    consent: Option<&crate::consent::ConsentCheck>,
) -> Checked {
    check_received(read(req, &rules.limits), rules, consent)
}

/// Checks every log record of a request. A record that breaks a rule (the
/// dual key or a [`Limits`] bound) is refused by itself; the rest of the
/// batch is kept. A refused `audit.action` or `audit.violation` also
/// becomes a violation row (`detected_by = collector`), so that a
/// non-compliant client leaves evidence, not silence.
pub fn check_received(
    received: Vec<Received>,
    rules: &Rules,
    consent: Option<&crate::consent::ConsentCheck>,
) -> Checked {
    let limits = &rules.limits;
    let mut out = Checked::default();
    for (n, record) in received.into_iter().enumerate() {
        let found = record.problems;
        match record.decoded {
            Decoded::Action(draft) => {
                let mut draft = *draft;
                if draft
                    .event_id
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    draft.event_id = Some(new_event_id());
                    draft
                        .attributes
                        .insert("audit.event.id.assigned_by".into(), "collector".into());
                }
                let checked = match consent {
                    Some(c) => c.check(rules, draft, found),
                    None => audit_schema::consent::check_action(rules, draft, found, None),
                };
                match checked {
                    Ok(record) => out.batch.actions.push(record),
                    Err(rejection) => {
                        out.refuse(
                            rejection.problems.first().map_or("rules", |p| p.code()),
                            format!("record {n} refused: {rejection}"),
                        );
                        out.batch
                            .violations
                            .push(refused_action(&rejection, limits));
                    }
                }
            }
            Decoded::Violation(v) => {
                let mut v = *v;
                if v.event_id.trim().is_empty() {
                    v.event_id = new_event_id();
                }
                if v.time_ns <= 0 {
                    v.time_ns = crate::now_ns();
                }
                if v.detected_by.is_empty() {
                    v.detected_by = "client".into();
                }
                if v.reason.is_empty() {
                    v.reason = "unspecified".into();
                }
                let mut problems = found;
                problems.extend(limits.check_violation(&v));
                if problems.is_empty() {
                    out.batch.violations.push(v);
                } else {
                    let row = refused_violation(v, &problems, limits);
                    out.refuse(
                        problems.first().map_or("violation", |p| p.code()),
                        format!("record {n} refused: {}", row.reason),
                    );
                    out.batch.violations.push(row);
                }
            }
            Decoded::NotAudit { event_name } => out.refuse(
                "not_audit",
                format!(
                    "record {n} refused: event_name {:?} is not an audit record \
                         (expected {:?} or {:?}; attribute {:?} is the wire name of the action)",
                    clip(&event_name, QUOTE_BYTES),
                    wire::EVENT_ACTION,
                    wire::EVENT_VIOLATION,
                    Field::Action.wire(),
                ),
            ),
        }
    }
    out
}

/// The collector's violation row about a refused action, cut to the limits
/// (the action may have been refused for its size) and dated now when its
/// own time is not believable.
fn refused_action(rejection: &Rejection, limits: &Limits) -> ViolationRecord {
    let d = &rejection.draft;
    let time_ns = d
        .start_time_ns
        .filter(|t| limits.time_ok(*t))
        .unwrap_or_else(crate::now_ns);
    let mut row = ViolationRecord {
        attributes: [(
            "audit.refused_event_id".to_owned(),
            d.event_id.clone().unwrap_or_default(),
        )]
        .into(),
        ..ViolationRecord::refused(
            rejection,
            "collector",
            refusal_id(d.event_id.as_deref().unwrap_or_default()),
            time_ns,
            None,
        )
    };
    limits.clip_violation(&mut row);
    row
}

/// The collector's row about a client's violation record it refused: the
/// client's row, cut to the limits, with the collector's reason.
fn refused_violation(v: ViolationRecord, problems: &[Problem], limits: &Limits) -> ViolationRecord {
    let rejection = Rejection {
        problems: problems.to_vec(),
        draft: Box::default(),
    };
    let mut row = ViolationRecord {
        event_id: refusal_id(&v.event_id),
        time_ns: Some(v.time_ns)
            .filter(|t| limits.time_ok(*t))
            .unwrap_or_else(crate::now_ns),
        detected_by: "collector".into(),
        missing: rejection.missing(),
        reason: rejection.reason(),
        attributes: [
            ("audit.refused_event_id".to_owned(), v.event_id.clone()),
            (
                "audit.refused_detected_by".to_owned(),
                v.detected_by.clone(),
            ),
        ]
        .into(),
        ..v
    };
    limits.clip_violation(&mut row);
    row
}

impl Checked {
    /// Records which authenticated client delivered every row, replacing any
    /// value the client put there itself; with no authenticated client
    /// (`None`) such a value is removed, so the attribute is never a claim.
    pub fn stamp_client(&mut self, client: Option<&str>) {
        let actions = self.batch.actions.iter_mut().map(|a| &mut a.attributes);
        let violations = self.batch.violations.iter_mut().map(|v| &mut v.attributes);
        for attributes in actions.chain(violations) {
            match client {
                Some(name) => attributes.insert(CLIENT_ATTR.into(), name.into()),
                None => attributes.remove(CLIENT_ATTR),
            };
        }
    }

    fn refuse(&mut self, reason: &'static str, message: String) {
        self.refused += 1;
        *self.refused_by.entry(reason).or_default() += 1;
        if self.messages.len() < MAX_MESSAGES {
            self.messages
                .push(clip(&message, MAX_MESSAGE_BYTES).to_owned());
        }
    }

    /// The OTLP response: `partial_success` set only when something was refused.
    pub fn response(&self) -> ExportLogsServiceResponse {
        if self.refused == 0 {
            return ExportLogsServiceResponse::default();
        }
        let mut error_message = self.messages.join("; ");
        if self.refused as usize > self.messages.len() {
            error_message.push_str(&format!(
                "; and {} more",
                self.refused as usize - self.messages.len()
            ));
        }
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: self.refused,
                error_message,
            }),
        }
    }
}
