//! bonded's supply-chain vocabulary, shared by the CLI and the server.
//!
//! Owns: signing keys ([`keys`]), DSSE envelopes ([`dsse`]), in-toto Statement v1 and predicate
//! types ([`statement`]), SLSA Provenance v1 ([`provenance`]), SBOM validation and generation
//! ([`sbom`]), how attestations are laid out as OCI referrers ([`media`]), and the one routine
//! that decides whether an envelope counts ([`verify`]).
//!
//! Invariant: pure computation over bytes; no HTTP, no stores, no tokio. Private keys are only
//! ever handled here on the client side; the server sees public keys and envelopes.

pub mod dsse;
pub mod gobuild;
pub mod keys;
pub mod media;
pub mod provenance;
pub mod sbom;
pub mod sbom_gen;
pub mod statement;
pub mod summary;
pub mod time;
pub mod verify;

#[cfg(test)]
mod tests;
