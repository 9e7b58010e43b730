//! Storage accounting for both backends: the same aggregation, with each backend's way of taking
//! a repository name's first component.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::postgres::PostgresBackend;
use crate::sqlite::SqliteBackend;
use bonded_types::Digest;

use crate::{Charge, NamespaceUsage, Result, Usage};

/// `{ns}` is the namespace expression over `r.name`; `{p}` the parameter marker style.
fn refs_query(ns: &str) -> String {
    format!(
        "SELECT {ns} AS ns, m.created_at AS m_created, b.digest, b.size, b.created_at AS b_created
         FROM manifests m
         JOIN repositories r ON r.id = m.repo_id
         JOIN manifest_refs mr ON mr.repo_id = m.repo_id AND mr.manifest = m.digest AND mr.kind = 'blob'
         JOIN blobs b ON b.digest = mr.child
         WHERE m.deleted_at IS NULL"
    )
}

fn counts_query(ns: &str) -> String {
    format!(
        "SELECT {ns} AS ns, count(*) FROM manifests m JOIN repositories r ON r.id = m.repo_id
         WHERE m.deleted_at IS NULL GROUP BY 1"
    )
}

/// Distinct linked blobs per namespace: what quotas charge (docs/quotas.md).
fn charged_query(ns: &str) -> String {
    format!(
        "SELECT ns, CAST(sum(size) AS BIGINT) FROM (
           SELECT DISTINCT {ns} AS ns, b.digest, b.size FROM repo_blobs rb
           JOIN repositories r ON r.id = rb.repo_id
           JOIN blobs b ON b.digest = rb.digest
           WHERE b.deleting_at IS NULL) c
         GROUP BY ns"
    )
}

/// The repositories of one namespace: `r.name` is the namespace itself or starts with
/// `<namespace>/` (compared as a prefix, not with LIKE: `_` is a wildcard there and legal in names).
/// `{ns}` binds the namespace, `{len}` the prefix's length, `{prefix}` the prefix.
fn in_namespace(ns: &str, len: &str, prefix: &str) -> String {
    format!("(r.name = {ns} OR substr(r.name, 1, CAST({len} AS INTEGER)) = {prefix})")
}

fn charge_bytes_query(filter: &str) -> String {
    format!(
        "SELECT CAST(sum(b.size) AS BIGINT) FROM blobs b
         WHERE b.deleting_at IS NULL AND b.digest IN (
           SELECT rb.digest FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id
           WHERE {filter})"
    )
}

fn charge_artifacts_query(filter: &str) -> String {
    format!(
        "SELECT count(*) FROM manifests m JOIN repositories r ON r.id = m.repo_id
         WHERE m.deleted_at IS NULL AND {filter}"
    )
}

fn charged_for_query(filter: &str, digest: &str) -> String {
    format!(
        "SELECT count(*) FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id
         WHERE rb.digest = {digest} AND {filter}"
    )
}

/// (namespace, manifest time, blob digest, blob size, blob time), as `refs_query` selects.
type RefRow = (String, i64, String, i64, i64);

/// Folds (namespace, manifest time, blob, size, blob time) rows into usage.
struct Fold {
    by_ns: BTreeMap<String, (NamespaceUsage, std::collections::HashSet<String>)>,
    since: Vec<i64>,
}

impl Fold {
    fn new(since: &[i64]) -> Fold {
        Fold {
            by_ns: BTreeMap::new(),
            since: since.to_vec(),
        }
    }

    fn entry(&mut self, ns: &str) -> &mut (NamespaceUsage, std::collections::HashSet<String>) {
        let n = self.since.len();
        self.by_ns.entry(ns.to_string()).or_insert_with(|| {
            (
                NamespaceUsage {
                    namespace: ns.to_string(),
                    logical_added: vec![0; n],
                    physical_added: vec![0; n],
                    ..Default::default()
                },
                Default::default(),
            )
        })
    }

    fn add(&mut self, ns: &str, m_created: i64, digest: String, size: u64, b_created: i64) {
        let since = self.since.clone();
        let (u, seen) = self.entry(ns);
        u.logical_bytes += size;
        for (i, s) in since.iter().enumerate() {
            if m_created >= *s {
                u.logical_added[i] += size;
            }
        }
        if seen.insert(digest) {
            u.physical_bytes += size;
            for (i, s) in since.iter().enumerate() {
                if b_created >= *s {
                    u.physical_added[i] += size;
                }
            }
        }
    }

    fn add_all(&mut self, rows: Vec<RefRow>) {
        for (ns, m_created, digest, size, b_created) in rows {
            self.add(&ns, m_created, digest, size as u64, b_created);
        }
    }

    fn finish(
        self,
        counts: Vec<(String, i64)>,
        charged: Vec<(String, i64)>,
    ) -> Vec<NamespaceUsage> {
        let mut me = self;
        for (ns, n) in counts {
            me.entry(&ns).0.artifacts = n as u64;
        }
        for (ns, bytes) in charged {
            me.entry(&ns).0.charged_bytes = bytes as u64;
        }
        me.by_ns.into_values().map(|(u, _)| u).collect()
    }
}

const SQLITE_NS: &str = "substr(r.name, 1, instr(r.name || '/', '/') - 1)";
const PG_NS: &str = "split_part(r.name, '/', 1)";

/// `Usage` for one backend: the same queries (numbered `$n` parameters, which SQLite binds in
/// order of appearance, and standard `CAST`s), over `$pool`, with `$ns` the backend's way of
/// taking a repository name's first component.
macro_rules! usage_impl {
    ($backend:ty, $pool:ident, $ns:expr) => {
        #[async_trait]
        impl Usage for $backend {
            async fn namespaces(&self, since_ms: &[i64]) -> Result<Vec<NamespaceUsage>> {
                let mut fold = Fold::new(since_ms);
                let rows: Vec<RefRow> = sqlx::query_as(&refs_query($ns))
                    .fetch_all(self.$pool())
                    .await?;
                fold.add_all(rows);
                let counts: Vec<(String, i64)> = sqlx::query_as(&counts_query($ns))
                    .fetch_all(self.$pool())
                    .await?;
                let charged: Vec<(String, i64)> = sqlx::query_as(&charged_query($ns))
                    .fetch_all(self.$pool())
                    .await?;
                Ok(fold.finish(counts, charged))
            }

            async fn stored(&self) -> Result<(u64, u64)> {
                let (n, bytes): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT count(*), CAST(sum(size) AS BIGINT) FROM blobs
                     WHERE deleting_at IS NULL",
                )
                .fetch_one(self.$pool())
                .await?;
                Ok((n as u64, bytes.unwrap_or(0) as u64))
            }

            async fn charge(&self, namespace: &str) -> Result<Charge> {
                let prefix = format!("{namespace}/");
                let filter = in_namespace("$1", "$2", "$3");
                let bytes: Option<i64> = sqlx::query_scalar(&charge_bytes_query(&filter))
                    .bind(namespace)
                    .bind(prefix.len() as i64)
                    .bind(&prefix)
                    .fetch_one(self.$pool())
                    .await?;
                let artifacts: i64 = sqlx::query_scalar(&charge_artifacts_query(&filter))
                    .bind(namespace)
                    .bind(prefix.len() as i64)
                    .bind(&prefix)
                    .fetch_one(self.$pool())
                    .await?;
                Ok(Charge {
                    bytes: bytes.unwrap_or(0) as u64,
                    artifacts: artifacts as u64,
                })
            }

            async fn charged_for(&self, namespace: &str, digest: &Digest) -> Result<bool> {
                let prefix = format!("{namespace}/");
                let filter = in_namespace("$2", "$3", "$4");
                let n: i64 = sqlx::query_scalar(&charged_for_query(&filter, "$1"))
                    .bind(digest.to_string())
                    .bind(namespace)
                    .bind(prefix.len() as i64)
                    .bind(&prefix)
                    .fetch_one(self.$pool())
                    .await?;
                Ok(n > 0)
            }
        }
    };
}

usage_impl!(SqliteBackend, reader, SQLITE_NS);
usage_impl!(PostgresBackend, pool, PG_NS);
