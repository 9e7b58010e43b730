//! bonded-vuln: the pure core of vulnerability matching.
//!
//! Owns the ecosystem version orderings (`version`), package URLs and their mapping to OSV
//! package names (`purl`), the OSV record model and its compact in-memory form (`osv`), range
//! evaluation and the name index (`matcher`), CVSS base scores and severity levels (`cvss`) and
//! reading OSV exports from disk (`import`). No tokio, HTTP or database: the server's scan jobs
//! and the CLI call it; storing advisories and findings is theirs.

pub mod cvss;
pub mod import;
pub mod matcher;
pub mod osv;
pub mod purl;
pub mod version;

pub use cvss::{Severity, SeverityInfo, SeveritySource};
pub use matcher::{Finding, Index};
pub use osv::{Advisory, OsvRecord};
pub use purl::{OsvPackage, Purl, PurlError};
pub use version::{compare, Ecosystem, Version, VersionError};
