#!/usr/bin/env python3
"""Verifies a bonded signature with public tooling, independently of bonded's code.

usage: verify_dsse.py ENVELOPE_JSON PUBLIC_KEY_PEM KEYID SUBJECT_DIGEST

- securesystemslib (PyPI) parses the DSSE envelope, recomputes the PAE and verifies the signature
  with the public key (Ed25519 or ECDSA P-256) through `cryptography`;
- in-toto (PyPI) is imported to check that its envelope model accepts the same envelope;
- the payload must be an in-toto Statement v1 whose subject names SUBJECT_DIGEST.
Prints a JSON summary; exits non-zero on any failure.
"""
import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from in_toto.models.metadata import Envelope as InTotoEnvelope


def main():
    env_path, pem_path, keyid, subject = sys.argv[1:5]
    with open(env_path) as f:
        envelope_dict = json.load(f)
    with open(pem_path, "rb") as f:
        public = load_pem_public_key(f.read())
    key = SSlibKey.from_crypto(public, keyid=keyid)
    envelope = Envelope.from_dict(json.loads(json.dumps(envelope_dict)))
    accepted = envelope.verify([key], 1)
    assert keyid in accepted, f"signature by {keyid} not accepted: {accepted}"
    # in-toto's own envelope class (a securesystemslib subclass) reads it too.
    InTotoEnvelope.from_dict(json.loads(json.dumps(envelope_dict))).verify([key], 1)
    assert envelope.payload_type == "application/vnd.in-toto+json", envelope.payload_type
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1", statement["_type"]
    alg, hexdigest = subject.split(":", 1)
    assert any(s["digest"].get(alg) == hexdigest for s in statement["subject"]), statement["subject"]
    print(json.dumps({
        "verified_by": list(accepted),
        "scheme": key.scheme,
        "predicateType": statement["predicateType"],
        "subject": statement["subject"],
    }))


if __name__ == "__main__":
    main()
