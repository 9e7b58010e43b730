//! Reading OSV exports from disk and planning incremental updates.
//!
//! Loads records from a directory tree of `*.json` files or from an OSV `all.zip` archive (the
//! per-ecosystem export, one record per entry). A file that does not parse is reported with its
//! name and skipped; it never aborts the import. [`plan_merge`] compares incoming records with
//! what the caller already stores (id → `modified`) so only new and updated records are
//! rewritten. Reading files is the only I/O here; storing is the caller's.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::osv::OsvRecord;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening zip archive {path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
}

/// A record that could not be read or parsed; the import went on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file path, or the entry name inside the archive.
    pub file: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<OsvRecord>,
    pub errors: Vec<FileError>,
}

impl Loaded {
    fn add(&mut self, file: String, bytes: &[u8]) {
        match serde_json::from_slice::<OsvRecord>(bytes) {
            Ok(r) if r.id.is_empty() => self.errors.push(FileError {
                file,
                message: "record has an empty id".to_owned(),
            }),
            Ok(r) => self.records.push(r),
            Err(e) => self.errors.push(FileError {
                file,
                message: e.to_string(),
            }),
        }
    }
}

/// Loads every `*.json` file under `dir`, recursively, in path order.
pub fn load_dir(dir: &Path) -> Result<Loaded, ImportError> {
    let mut files = Vec::new();
    collect_json(dir, &mut files)?;
    files.sort();
    let mut out = Loaded::default();
    for path in files {
        match fs::read(&path) {
            Ok(bytes) => out.add(path.display().to_string(), &bytes),
            Err(e) => out.errors.push(FileError {
                file: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
    Ok(out)
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let ty = entry.file_type().map_err(io)?;
        if ty.is_dir() {
            collect_json(&path, out)?;
        } else if ty.is_file() && path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Loads every `*.json` entry of an OSV zip export (e.g. `PyPI/all.zip`).
pub fn load_zip(path: &Path) -> Result<Loaded, ImportError> {
    let file = fs::File::open(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| ImportError::Zip {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Loaded::default();
    let mut buf = Vec::new();
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                out.errors.push(FileError {
                    file: format!("{}#{i}", path.display()),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let name = entry.name().to_owned();
        if !entry.is_file() || !name.ends_with(".json") {
            continue;
        }
        buf.clear();
        if let Err(e) = entry.read_to_end(&mut buf) {
            out.errors.push(FileError {
                file: name,
                message: e.to_string(),
            });
            continue;
        }
        out.add(name, &buf);
    }
    Ok(out)
}

/// What to do with each incoming record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// Not stored yet (and not withdrawn).
    pub new: Vec<String>,
    /// Stored with an older `modified`.
    pub updated: Vec<String>,
    /// Stored with the same or a newer `modified`.
    pub unchanged: Vec<String>,
    /// Incoming records that are withdrawn and newer than what is stored: drop them from
    /// matching (whether or not they were stored before).
    pub withdrawn: Vec<String>,
}

/// Compares two OSV `modified` timestamps (RFC 3339); falls back to string order when one
/// does not parse.
fn newer(incoming: &str, existing: &str) -> bool {
    use chrono::DateTime;
    match (
        DateTime::parse_from_rfc3339(incoming),
        DateTime::parse_from_rfc3339(existing),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => incoming > existing,
    }
}

/// Plans an incremental import. `existing` maps stored ids to their `modified`.
pub fn plan_merge<'a>(
    existing: &HashMap<String, String>,
    incoming: impl IntoIterator<Item = &'a OsvRecord>,
) -> MergePlan {
    let mut plan = MergePlan::default();
    for r in incoming {
        let bucket = match (existing.get(&r.id), r.withdrawn.is_some()) {
            (Some(m), _) if !newer(&r.modified, m) => &mut plan.unchanged,
            (_, true) => &mut plan.withdrawn,
            (None, false) => &mut plan.new,
            (Some(_), false) => &mut plan.updated,
        };
        bucket.push(r.id.clone());
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, modified: &str, withdrawn: bool) -> OsvRecord {
        OsvRecord {
            id: id.to_owned(),
            modified: modified.to_owned(),
            withdrawn: withdrawn.then(|| modified.to_owned()),
            ..OsvRecord::default()
        }
    }

    #[test]
    fn merge_plan_classifies_by_modified_and_withdrawn() {
        let existing: HashMap<String, String> = [
            ("A", "2024-01-01T00:00:00Z"),
            ("B", "2024-01-01T00:00:00Z"),
            ("C", "2024-01-01T00:00:00Z"),
            ("D", "2024-01-01T00:00:00.500Z"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let incoming = [
            rec("A", "2024-01-01T00:00:00Z", false),
            rec("B", "2024-03-01T00:00:00Z", false),
            rec("C", "2024-03-01T00:00:00Z", true),
            rec("D", "2024-01-01T00:00:00.4Z", false),
            rec("E", "2024-03-01T00:00:00Z", false),
            rec("F", "2024-03-01T00:00:00Z", true),
        ];
        let plan = plan_merge(&existing, &incoming);
        assert_eq!(plan.new, ["E"]);
        assert_eq!(plan.updated, ["B"]);
        assert_eq!(plan.unchanged, ["A", "D"]);
        assert_eq!(plan.withdrawn, ["C", "F"]);
    }

    #[test]
    fn a_bad_file_is_reported_by_name_and_does_not_abort() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(
            dir.path().join("sub/good.json"),
            r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        fs::write(dir.path().join("bad.json"), "{not json").unwrap();
        fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(loaded.records.len(), 1);
        assert_eq!(loaded.records[0].id, "X-1");
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0].file.ends_with("bad.json"));
    }

    #[test]
    fn loads_records_from_a_zip_export() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.zip");
        let mut zw = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zw.start_file("PYSEC-2023-1.json", opts).unwrap();
        zw.write_all(br#"{"id": "PYSEC-2023-1", "modified": "2024-01-01T00:00:00Z"}"#)
            .unwrap();
        zw.start_file("broken.json", opts).unwrap();
        zw.write_all(b"[]").unwrap();
        zw.finish().unwrap();
        let loaded = load_zip(&path).unwrap();
        assert_eq!(
            loaded
                .records
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["PYSEC-2023-1"]
        );
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(loaded.errors[0].file, "broken.json");
    }
}
