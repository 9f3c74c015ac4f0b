//! `verify --witness DIR|s3://BUCKET/PREFIX`: every checkpoint the
//! collectors wrote to their witness, checked against the chains in the
//! data dir.

use std::collections::BTreeSet;
use std::path::Path;

use super::{check_checkpoint_entries, Report};
use crate::checkpoint::NoteVerifier;
use crate::manifest;

/// Checks each collector's witnessed checkpoints (signature, then the
/// manifest still holding the entries counted, ending in the signed hash).
/// `key` replaces the public keys pinned in the witness; a collector of the
/// data dir the witness does not know is a warning (a witness configured
/// after it started, or removed).
pub fn check_witness(
    root: &Path,
    dir: &Path,
    remote: &crate::store::RemoteOptions,
    key: Option<&NoteVerifier>,
    report: &mut Report,
) -> std::io::Result<()> {
    let witnessed = crate::witness::read(dir, remote)?;
    let known: BTreeSet<&str> = witnessed.iter().map(|w| w.0.as_str()).collect();
    for id in manifest::read_all(root)?.keys() {
        if !known.contains(id.as_str()) {
            report.warn(
                "witness_missing",
                format!("manifest/{id}.jsonl"),
                format!("the witness {} has no checkpoint of it", dir.display()),
            );
        }
    }
    for (id, pinned, notes) in &witnessed {
        let name = format!("manifest/{id}.jsonl");
        let Some(key) = key.or(pinned.as_ref()) else {
            report.add(
                "witness_key",
                format!("{}/{id}.pub", dir.display()),
                "no readable public key to check the checkpoints with",
            );
            continue;
        };
        let entries = match manifest::read(&manifest::manifest_path(root, id)) {
            Ok((entries, _)) => entries,
            Err(e) => {
                report.add("manifest_unreadable", &name, e.to_string());
                continue;
            }
        };
        for (path, note) in notes {
            report.witnessed += 1;
            let cp = match key.open(note) {
                Ok(cp) if cp.origin == crate::checkpoint::origin(id) => cp,
                Ok(cp) => {
                    report.add(
                        "checkpoint_origin",
                        format!("{}/{path}", dir.display()),
                        format!("origin {:?} in the folder of collector {id}", cp.origin),
                    );
                    continue;
                }
                Err(e) => {
                    report.add(
                        "checkpoint_signature",
                        format!("{}/{path}", dir.display()),
                        e.to_string(),
                    );
                    continue;
                }
            };
            check_checkpoint_entries(&name, &entries, &cp, report);
        }
    }
    Ok(())
}
