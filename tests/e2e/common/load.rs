//! Load for the end-to-end tests: audit records, OTLP requests, and a
//! loader that remembers which records were acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use audit_schema::otlp::{encode_action, ResourceInfo};
use audit_schema::AuditRecord;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

/// An agent action with id `id` at `t` (ns), by `agt_load` for `usr_ops`.
pub fn record(id: String, t: i64) -> AuditRecord {
    AuditRecord {
        event_id: id,
        start_time_ns: t,
        agent_id: Some("agt_load".into()),
        service_name: "loader".into(),
        ..super::agent_action("", "usr_ops")
    }
}

/// One OTLP export of `records`.
pub fn request(records: &[AuditRecord]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(
                ResourceInfo {
                    service_name: Some("loader".into()),
                    service_instance_id: None,
                }
                .to_resource(),
            ),
            scope_logs: vec![ScopeLogs {
                log_records: records.iter().map(encode_action).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One export of `batch` over gRPC to `url`, which must store all of it.
pub fn send(url: &str, batch: &[AuditRecord]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = LogsServiceClient::connect(url.to_owned()).await.unwrap();
        let resp = client.export(request(batch)).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
    });
}

/// Sends batches until `stop`, recording the ids of acknowledged ones.
pub fn load(url: String, prefix: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let Ok(mut client) = LogsServiceClient::connect(url).await else {
            return;
        };
        let mut n = 0u64;
        let t0 = 1_764_300_000_000_000_000i64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<AuditRecord> = (0..20)
                .map(|i| {
                    n += 1;
                    record(format!("{prefix}-{n}-{i}"), t0 + n as i64 * 1_000_000_000)
                })
                .collect();
            match client.export(request(&batch)).await {
                Ok(resp) => {
                    assert_eq!(resp.into_inner().partial_success, None);
                    acked
                        .lock()
                        .unwrap()
                        .extend(batch.into_iter().map(|r| r.event_id));
                }
                Err(_) => return, // killed mid-request: not acknowledged
            }
        }
    });
}
