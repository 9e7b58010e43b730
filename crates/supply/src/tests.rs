//! Verification decisions, one test per way an envelope can fail to count.

use bonded_types::{Algorithm as DigestAlg, Digest};
use serde_json::json;

use crate::dsse::{Envelope, Signature, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::{Algorithm, SigningKey};
use crate::media::Kind;
use crate::statement::{predicate_types, Statement, Subject};
use crate::verify::{verify, Rejection, TrustedKey};

fn digest(s: &str) -> Digest {
    Digest::of(DigestAlg::Sha256, s.as_bytes())
}

fn trusted(k: &SigningKey) -> TrustedKey {
    TrustedKey {
        key_id: k.public().key_id(),
        key_set: "release".into(),
        public: k.public(),
        not_before_ms: None,
        not_after_ms: None,
        revoked_at_ms: None,
    }
}

fn signed(k: &SigningKey, about: &Digest) -> Vec<u8> {
    let st = Statement::new(
        Subject::of("r/app", about),
        predicate_types::SIGNATURE,
        json!({"reference": "r/app:v1", "signedAt": "2026-01-01T00:00:00Z"}),
    );
    Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &st.to_json(), k).to_json()
}

#[test]
fn a_signature_by_a_trusted_key_counts() {
    for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
        let k = SigningKey::generate(alg);
        let d = digest("m");
        let v = verify(&signed(&k, &d), Kind::Signature, &d, &[trusted(&k)], 1000).unwrap();
        assert_eq!(v.key_id, k.public().key_id());
        assert_eq!(v.key_sets, ["release"]);
        assert_eq!(v.algorithm, alg);
    }
}

#[test]
fn a_signature_over_another_digest_does_not_count() {
    let k = SigningKey::generate(Algorithm::Ed25519);
    let err = verify(
        &signed(&k, &digest("other")),
        Kind::Signature,
        &digest("m"),
        &[trusted(&k)],
        0,
    )
    .unwrap_err();
    assert!(matches!(err, Rejection::SubjectMismatch { .. }), "{err}");
    assert!(err.to_string().contains("not sha256:"), "{err}");
}

#[test]
fn unknown_revoked_and_out_of_window_keys_do_not_count() {
    let k = SigningKey::generate(Algorithm::Ed25519);
    let other = SigningKey::generate(Algorithm::Ed25519);
    let d = digest("m");
    let env = signed(&k, &d);
    let err = verify(&env, Kind::Signature, &d, &[trusted(&other)], 0).unwrap_err();
    assert!(matches!(&err, Rejection::UnknownKey(ids) if ids == &[k.public().key_id()]));
    assert_eq!(verify(&env, Kind::Signature, &d, &[], 0).unwrap_err(), err);

    let mut revoked = trusted(&k);
    revoked.revoked_at_ms = Some(5);
    // Revocation is not about time: even a signature received before it stops counting.
    let err = verify(&env, Kind::Signature, &d, &[revoked], 1).unwrap_err();
    assert!(matches!(err, Rejection::Revoked { .. }), "{err}");

    let mut window = trusted(&k);
    window.not_before_ms = Some(100);
    window.not_after_ms = Some(200);
    assert!(verify(&env, Kind::Signature, &d, &[window.clone()], 150).is_ok());
    for at in [99, 200, 10_000] {
        let err = verify(&env, Kind::Signature, &d, &[window.clone()], at).unwrap_err();
        assert!(
            matches!(err, Rejection::OutsideWindow { .. }),
            "{at}: {err}"
        );
    }
}

#[test]
fn a_key_claiming_another_keys_id_does_not_verify() {
    let k = SigningKey::generate(Algorithm::Ed25519);
    let impostor = SigningKey::generate(Algorithm::Ed25519);
    let d = digest("m");
    let mut env: Envelope = Envelope::parse(&signed(&impostor, &d)).unwrap();
    env.signatures[0].keyid = k.public().key_id();
    let err = verify(&env.to_json(), Kind::Signature, &d, &[trusted(&k)], 0).unwrap_err();
    assert!(matches!(err, Rejection::BadSignature(_)), "{err}");
}

#[test]
fn tampered_payloads_and_malformed_envelopes_do_not_count() {
    let k = SigningKey::generate(Algorithm::EcdsaP256);
    let d = digest("m");
    let keys = [trusted(&k)];
    // Payload swapped for a statement about the same digest that was never signed.
    let mut env = Envelope::parse(&signed(&k, &d)).unwrap();
    let forged = Statement::new(Subject::of("x", &d), predicate_types::SIGNATURE, json!({}));
    env.payload =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, forged.to_json());
    let err = verify(&env.to_json(), Kind::Signature, &d, &keys, 0).unwrap_err();
    assert!(matches!(err, Rejection::BadSignature(_)), "{err}");

    let mut unsigned = env.clone();
    unsigned.signatures.clear();
    assert_eq!(
        verify(&unsigned.to_json(), Kind::Signature, &d, &keys, 0).unwrap_err(),
        Rejection::Unsigned
    );
    let mut garbage_sig = Envelope::parse(&signed(&k, &d)).unwrap();
    garbage_sig.signatures = vec![Signature {
        keyid: k.public().key_id(),
        sig: "!!!".into(),
    }];
    assert!(matches!(
        verify(&garbage_sig.to_json(), Kind::Signature, &d, &keys, 0).unwrap_err(),
        Rejection::Malformed(_)
    ));
    for bad in [
        &b"not json"[..],
        br#"{"payload":"e30=","payloadType":"application/vnd.in-toto+json"}"#,
        br#"{"payload":"%%%","payloadType":"application/vnd.in-toto+json","signatures":[]}"#,
        br#"{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}"#,
    ] {
        let err = verify(bad, Kind::Signature, &d, &keys, 0).unwrap_err();
        assert!(matches!(err, Rejection::Malformed(_)), "{err}");
    }
    let other_type = Envelope::sign("text/plain", b"hi", &k).to_json();
    assert!(matches!(
        verify(&other_type, Kind::Signature, &d, &keys, 0).unwrap_err(),
        Rejection::PayloadType(_)
    ));
}

#[test]
fn a_provenance_statement_is_not_a_signature() {
    let k = SigningKey::generate(Algorithm::Ed25519);
    let d = digest("m");
    let st = Statement::new(
        Subject::of("", &d),
        predicate_types::SLSA_PROVENANCE_V1,
        json!({}),
    );
    let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &st.to_json(), &k).to_json();
    let err = verify(&env, Kind::Signature, &d, &[trusted(&k)], 0).unwrap_err();
    assert!(matches!(err, Rejection::WrongPredicate { .. }), "{err}");
    assert!(verify(&env, Kind::Provenance, &d, &[trusted(&k)], 0).is_ok());
}
