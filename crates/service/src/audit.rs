//! The audit log: who did what, to which repository, from where, when, and how it ended.
//!
//! Entries are appended to a hash chain kept by the metadata store (each entry's hash covers the
//! previous hash, so an edited, removed or reordered entry breaks every hash after it). Every
//! `checkpoint_every` entries the chain head is signed with the token signing key, so rewriting
//! the whole tail is caught too. [`Auditor::verify`] re-derives the chain and checks it.
//!
//! Anything in the server may record through [`Auditor::record`] (the HTTP edge for pushes, tag
//! moves, deletes, pulls; [`crate::auth`] for logins, tokens and permission changes; later GC,
//! retention and policy changes). Recording never fails the action it describes: a failed append
//! is logged as an error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bonded_meta::{chain_hash, Checkpoint, MetaStore};
pub use bonded_meta::{AuditEntry, AuditQuery, AuditRecord};

use crate::auth::Keys;
use crate::now_ms;

#[derive(Clone)]
pub struct Auditor {
    meta: MetaStore,
    keys: Keys,
    pulls: bool,
    checkpoint_every: i64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: i64,
    pub checkpoints: usize,
    /// Empty when the log is intact.
    pub problems: Vec<String>,
}

/// The message a checkpoint signs.
fn checkpoint_message(seq: i64, hash: &str) -> String {
    format!("bonded-audit-checkpoint\n{seq}\n{hash}")
}

const PAGE: u32 = 1000;

impl Auditor {
    pub fn new(meta: MetaStore, keys: Keys, pulls: bool, checkpoint_every: u64) -> Auditor {
        Auditor {
            meta,
            keys,
            pulls,
            checkpoint_every: checkpoint_every.max(1) as i64,
        }
    }

    /// Whether pulls are recorded (they are many; off by default).
    pub fn records_pulls(&self) -> bool {
        self.pulls
    }

    /// Appends an entry (its time is set now). Never fails the caller.
    pub async fn record(&self, mut entry: AuditEntry) {
        entry.at_ms = now_ms();
        match self.meta.audit().append(&entry).await {
            Ok(r) if r.seq % self.checkpoint_every == 0 => {
                if let Err(e) = self.checkpoint_at(r.seq, &r.hash).await {
                    tracing::error!(error = %e, seq = r.seq, "signing an audit checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(
                error = %e,
                action = %entry.action,
                actor = %entry.actor,
                "appending to the audit log failed"
            ),
        }
    }

    async fn checkpoint_at(&self, seq: i64, hash: &str) -> Result<(), String> {
        let (kid, sig) = self
            .keys
            .sign(checkpoint_message(seq, hash).as_bytes())
            .await?;
        self.meta
            .audit()
            .add_checkpoint(&Checkpoint {
                seq,
                hash: hash.to_string(),
                kid,
                signature: B64.encode(sig),
                at_ms: now_ms(),
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Signs the current head now (also done every `checkpoint_every` entries).
    pub async fn checkpoint(&self) -> Result<i64, String> {
        let (seq, hash) = self.meta.audit().head().await.map_err(|e| e.to_string())?;
        if seq > 0 {
            self.checkpoint_at(seq, &hash).await?;
        }
        Ok(seq)
    }

    pub async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, String> {
        self.meta.audit().query(q).await.map_err(|e| e.to_string())
    }

    /// Re-derives the whole chain: sequence numbers without gaps, each entry linked to the one
    /// before and hashing to its stored hash, the head matching the last entry, and every
    /// checkpoint's signature valid and its hash equal to the chain's at that point.
    pub async fn verify(&self) -> Result<VerifyReport, String> {
        let mut report = VerifyReport::default();
        let checkpoints = self
            .meta
            .audit()
            .checkpoints()
            .await
            .map_err(|e| e.to_string())?;
        let mut cp = checkpoints.iter().peekable();
        let mut prev_hash = String::new();
        let mut expected_seq = 1;
        let mut after = 0;
        loop {
            let page = self
                .meta
                .audit()
                .query(&AuditQuery {
                    after_seq: after,
                    limit: PAGE,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if r.seq != expected_seq {
                    report.problems.push(format!(
                        "entry {} follows entry {}: entries {}..{} are missing",
                        r.seq,
                        expected_seq - 1,
                        expected_seq,
                        r.seq - 1
                    ));
                }
                if r.prev_hash != prev_hash {
                    report.problems.push(format!(
                        "entry {} does not link to the entry before it (removed or reordered)",
                        r.seq
                    ));
                }
                if chain_hash(&r.prev_hash, r.seq, &r.entry) != r.hash {
                    report.problems.push(format!(
                        "entry {} was altered: its content does not match its hash",
                        r.seq
                    ));
                }
                while let Some(c) = cp.next_if(|c| c.seq <= r.seq) {
                    if c.seq == r.seq && c.hash != r.hash {
                        report.problems.push(format!(
                            "checkpoint at entry {} signed a different chain than the one stored",
                            c.seq
                        ));
                    } else if c.seq < r.seq {
                        report.problems.push(format!(
                            "checkpoint at entry {} names a missing entry",
                            c.seq
                        ));
                    }
                }
                prev_hash = r.hash.clone();
                expected_seq = r.seq + 1;
                report.entries += 1;
            }
        }
        for c in cp {
            report.problems.push(format!(
                "checkpoint at entry {} is past the end of the log: entries were removed",
                c.seq
            ));
        }
        let (head_seq, head_hash) = self.meta.audit().head().await.map_err(|e| e.to_string())?;
        if head_seq != expected_seq - 1 || head_hash != prev_hash {
            report.problems.push(format!(
                "the log ends at entry {} but its head says {head_seq}: entries were removed or added behind bonded's back",
                expected_seq - 1
            ));
        }
        for c in &checkpoints {
            report.checkpoints += 1;
            let sig = B64.decode(&c.signature).unwrap_or_default();
            let valid = match self.keys.public(&c.kid, false).await {
                Some(key) => {
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
                        .verify(checkpoint_message(c.seq, &c.hash).as_bytes(), &sig)
                        .is_ok()
                }
                None => false,
            };
            if !valid {
                report.problems.push(format!(
                    "checkpoint at entry {} has an invalid signature",
                    c.seq
                ));
            }
        }
        Ok(report)
    }
}
