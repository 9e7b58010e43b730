#!/usr/bin/env python3
"""oras-py SDK interop against a plain-HTTP OCI registry (bonded's interop tests).

    oras_interop.py HOST:PORT REPO

1. pushes a 2-file artifact with an artifactType and manifest annotations through
   the SDK (OrasClient(insecure=True).push; the empty config descriptor of an
   OCI 1.1 artifact), tag v1; the second file with chunked upload (PATCH)
2. pulls it back through the SDK (by tag and by digest) and compares bytes
3. attaches two referrers to it (manifests whose `subject` is the first one):
   - "sig": pushed through the SDK (push(subject=...)), artifactType set
   - "sbom": built here and pushed by digest over plain HTTP, with no
     artifactType field (its artifact type is its config mediaType)
4. discovers them via GET /v2/REPO/referrers/<digest>, unfiltered and with
   ?artifactType= (checking the OCI-Filters-Applied header)
5. lists tags through the SDK, following Link pagination with n=1

Prints KEY=VALUE lines (SUBJECT_DIGEST, SIG_DIGEST, SBOM_DIGEST, ...) and
INTEROP_OK at the end; exits 1 with a message on the first mismatch.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import traceback

import oras.client
import oras.defaults
import oras.oci
import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MODEL_TYPE = "application/vnd.bonded.interop.model.v1"
SIG_TYPE = "application/vnd.bonded.interop.signature.v1"
SBOM_CONFIG_TYPE = "application/vnd.bonded.interop.sbom.config.v1+json"
SBOM_LAYER_TYPE = "application/vnd.bonded.interop.sbom.v1+json"
MODEL_LAYER_TYPE = "application/vnd.bonded.interop.model.weights.v1"


WORK_DIRS = []


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def sha256(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def prng(seed: str, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed.encode() + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


def emit(key, value):
    print(f"{key}={value}", flush=True)


def describe(r: requests.Response) -> str:
    body = r.content[:2000] if r.content is not None else b""
    return f"{r.request.method} {r.request.url} -> {r.status_code} {dict(r.headers)} {body!r}"


class Client(oras.client.OrasClient):
    """The SDK's client; push() cannot set a manifest artifactType, so we add
    it to the manifest dict just before the SDK uploads it."""

    artifact_type = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest = dict(manifest)
            manifest["artifactType"] = self.artifact_type
        return super().upload_manifest(manifest, container)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    registry, repo = sys.argv[1], sys.argv[2]
    base = f"http://{registry}/v2/{repo}"
    http = requests.Session()

    work = tempfile.mkdtemp(prefix="oras-interop-")
    WORK_DIRS.append(work)
    os.chdir(work)  # the SDK wants pushed files under the working directory
    model = prng("model", 300 * 1024 + 123)
    notes = b"bonded interop notes\n" * 5000  # ~100 KiB, sent in 32 KiB PATCH chunks
    with open("model.bin", "wb") as f:
        f.write(model)
    with open("notes.txt", "wb") as f:
        f.write(notes)
    with open("empty.json", "wb") as f:
        f.write(b"{}")

    client = Client(insecure=True)
    emit("ORAS_VERSION", getattr(oras, "__version__", "?"))

    # --- 1. push through the SDK --------------------------------------------
    client.artifact_type = MODEL_TYPE
    target = f"{registry}/{repo}:v1"
    annotations = {"org.example.interop.kind": "model", "org.opencontainers.image.description": "bonded interop model"}
    resp = client.push(
        target=target,
        files=[f"model.bin:{MODEL_LAYER_TYPE}"],
        manifest_config=f"empty.json:{OCI_EMPTY}",
        manifest_annotations=annotations,
        quiet=True,
    )
    check(resp.status_code == 201, f"manifest PUT: want 201, got {describe(resp)}")
    # Push the same artifact again with a second file uploaded in chunks:
    # model.bin now exists (HEAD hit), notes.txt goes POST + PATCH... + PUT.
    resp = client.push(
        target=target,
        files=[f"model.bin:{MODEL_LAYER_TYPE}", "notes.txt"],
        manifest_config=f"empty.json:{OCI_EMPTY}",
        manifest_annotations=annotations,
        do_chunked=True,
        chunk_size=32 * 1024,
        quiet=True,
    )
    check(resp.status_code == 201, f"manifest PUT (2nd): want 201, got {describe(resp)}")
    pushed_digest = resp.headers.get("Docker-Content-Digest")

    # Raw manifest bytes: the digest is over these.
    r = http.get(f"{base}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    check(r.status_code == 200, f"GET manifest: {describe(r)}")
    raw = r.content
    subject_digest = sha256(raw)
    check(
        r.headers.get("Content-Type", "").split(";")[0].strip() == OCI_MANIFEST,
        f"manifest Content-Type: {r.headers.get('Content-Type')!r}",
    )
    if r.headers.get("Docker-Content-Digest") is not None:
        check(r.headers["Docker-Content-Digest"] == subject_digest, f"GET Docker-Content-Digest {r.headers['Docker-Content-Digest']} != sha256(body) {subject_digest}")
    if pushed_digest is not None:
        check(pushed_digest == subject_digest, f"PUT Docker-Content-Digest {pushed_digest} != {subject_digest}")
    emit("SUBJECT_DIGEST", subject_digest)
    emit("SUBJECT_SIZE", len(raw))

    manifest = client.get_manifest(target)
    check(manifest == json.loads(raw), "SDK get_manifest differs from raw GET")
    check(manifest.get("artifactType") == MODEL_TYPE, f"artifactType lost: {manifest.get('artifactType')!r}")
    check(manifest["config"]["mediaType"] == OCI_EMPTY, f"config: {manifest['config']}")
    for k, v in annotations.items():
        check((manifest.get("annotations") or {}).get(k) == v, f"annotation {k} lost: {manifest.get('annotations')}")
    titles = [l["annotations"][oras.defaults.annotation_title] for l in manifest["layers"]]
    check(titles == ["model.bin", "notes.txt"], f"layer titles {titles}")
    check(manifest["layers"][0]["digest"] == sha256(model), "model layer digest")
    check(manifest["layers"][1]["digest"] == sha256(notes), "notes layer digest")
    emit("MODEL_BLOB", sha256(model))
    emit("NOTES_BLOB", sha256(notes))

    # --- 2. pull through the SDK --------------------------------------------
    for ref in (target, f"{registry}/{repo}@{subject_digest}"):
        out = os.path.join(work, "pull-" + hashlib.sha1(ref.encode()).hexdigest()[:8])
        files = client.pull(target=ref, outdir=out)
        got = {os.path.basename(p): open(p, "rb").read() for p in files}
        check(set(got) == {"model.bin", "notes.txt"}, f"pull {ref}: files {sorted(got)}")
        check(got["model.bin"] == model, f"pull {ref}: model.bin bytes differ")
        check(got["notes.txt"] == notes, f"pull {ref}: notes.txt bytes differ")
    emit("PULL", "ok")

    # --- 3a. referrer through the SDK (push(subject=...)) --------------------
    with open("signature.txt", "wb") as f:
        f.write(b"signed: " + subject_digest.encode() + b"\n")
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(raw))
    client.artifact_type = SIG_TYPE
    sig_annotations = {"org.example.interop.kind": "signature"}
    resp = client.push(
        target=f"{registry}/{repo}:v1-sig",
        files=["signature.txt"],
        manifest_config=f"empty.json:{OCI_EMPTY}",
        manifest_annotations=sig_annotations,
        subject=subject,
        quiet=True,
    )
    check(resp.status_code == 201, f"referrer PUT: {describe(resp)}")
    check(resp.headers.get("OCI-Subject") == subject_digest, f"referrer PUT: want OCI-Subject {subject_digest}: {describe(resp)}")
    r = http.get(f"{base}/manifests/v1-sig", headers={"Accept": OCI_MANIFEST})
    check(r.status_code == 200, f"GET v1-sig: {describe(r)}")
    sig_raw = r.content
    sig_digest = sha256(sig_raw)
    check(json.loads(sig_raw).get("subject", {}).get("digest") == subject_digest, "sig manifest lost its subject")
    emit("SIG_DIGEST", sig_digest)

    # --- 3b. referrer built by hand, pushed by digest over plain HTTP --------
    sbom_config = json.dumps({"tool": "bonded-interop"}, separators=(",", ":")).encode()
    sbom_layer = json.dumps({"packages": [{"name": "model", "digest": sha256(model)}]}, separators=(",", ":")).encode()
    for data in (sbom_config, sbom_layer):
        # Upload with the SDK's own blob upload (POST + PUT).
        path = os.path.join(work, sha256(data)[7:])
        with open(path, "wb") as f:
            f.write(data)
        r = client.upload_blob(path, f"{registry}/{repo}", {"digest": sha256(data), "size": len(data), "mediaType": "application/octet-stream"})
        check(r.status_code in (200, 201), f"blob upload: {describe(r)}")
    sbom = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": SBOM_CONFIG_TYPE, "digest": sha256(sbom_config), "size": len(sbom_config)},
        "layers": [{"mediaType": SBOM_LAYER_TYPE, "digest": sha256(sbom_layer), "size": len(sbom_layer)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(raw)},
        "annotations": {"org.example.interop.kind": "sbom"},
    }
    sbom_raw = json.dumps(sbom, separators=(",", ":")).encode()
    sbom_digest = sha256(sbom_raw)
    r = http.put(f"{base}/manifests/{sbom_digest}", data=sbom_raw, headers={"Content-Type": OCI_MANIFEST})
    check(r.status_code == 201, f"PUT sbom by digest: {describe(r)}")
    check(r.headers.get("OCI-Subject") == subject_digest, f"sbom PUT: want OCI-Subject {subject_digest}: {describe(r)}")
    if r.headers.get("Docker-Content-Digest") is not None:
        check(r.headers["Docker-Content-Digest"] == sbom_digest, f"sbom PUT digest header: {describe(r)}")
    r = http.get(f"{base}/manifests/{sbom_digest}", headers={"Accept": OCI_MANIFEST})
    check(r.status_code == 200 and r.content == sbom_raw, f"GET sbom by digest: {describe(r)}")
    emit("SBOM_DIGEST", sbom_digest)

    # --- 4. referrers API ----------------------------------------------------
    want_sig = {"mediaType": OCI_MANIFEST, "digest": sig_digest, "size": len(sig_raw), "artifactType": SIG_TYPE, "annotations": sig_annotations}
    want_sbom = {"mediaType": OCI_MANIFEST, "digest": sbom_digest, "size": len(sbom_raw), "artifactType": SBOM_CONFIG_TYPE, "annotations": sbom["annotations"]}

    def referrers(digest, artifact_type=None):
        params = {"artifactType": artifact_type} if artifact_type else None
        r = http.get(f"{base}/referrers/{digest}", params=params)
        check(r.status_code == 200, f"referrers: {describe(r)}")
        ct = r.headers.get("Content-Type", "").split(";")[0].strip()
        check(ct == OCI_INDEX, f"referrers Content-Type {ct!r}: {describe(r)}")
        idx = r.json()
        check(idx.get("schemaVersion") == 2 and idx.get("mediaType") == OCI_INDEX, f"referrers index: {idx}")
        check(isinstance(idx.get("manifests"), list), f"referrers manifests must be a list: {idx}")
        return r, sorted(idx["manifests"], key=lambda d: d["digest"])

    def same(got, want, what):
        got = [{k: d.get(k) for k in ("mediaType", "digest", "size", "artifactType", "annotations")} for d in got]
        want = sorted(want, key=lambda d: d["digest"])
        check(got == want, f"{what}:\n got  {json.dumps(got, indent=1)}\n want {json.dumps(want, indent=1)}")

    _, got = referrers(subject_digest)
    same(got, [want_sig, want_sbom], "referrers (unfiltered)")
    emit("REFERRERS", ",".join(d["digest"] for d in got))
    for atype, want in ((SIG_TYPE, [want_sig]), (SBOM_CONFIG_TYPE, [want_sbom]), ("application/vnd.bonded.none", [])):
        r, got = referrers(subject_digest, atype)
        same(got, want, f"referrers ?artifactType={atype}")
        applied = r.headers.get("OCI-Filters-Applied", "")
        check("artifactType" in [s.strip() for s in applied.split(",")], f"?artifactType={atype}: OCI-Filters-Applied {applied!r}: {describe(r)}")
    emit("FILTERED", "ok")
    # A digest with no referrers: 200 and an empty index, never 404.
    _, got = referrers(sig_digest)
    check(got == [], f"referrers of the signature: {got}")
    _, got = referrers("sha256:" + "0" * 64)
    check(got == [], f"referrers of an unknown digest: {got}")

    # --- 5. tags through the SDK (with n=1 pagination via Link) -------------
    tags = client.get_tags(f"{registry}/{repo}")
    check(sorted(tags) == ["v1", "v1-sig"], f"tags {tags}")
    paged = []

    def collect(resp):
        paged.extend(resp.json().get("tags") or [])
        return True

    client._do_paginated_request(f"{base}/tags/list?n=1", callable=collect)
    check(paged == sorted(tags), f"paginated tags (n=1) {paged}, want {sorted(tags)}")
    emit("TAGS", ",".join(paged))

    print("INTEROP_OK", flush=True)
    return 0


if __name__ == "__main__":
    start_dir = os.getcwd()
    try:
        sys.exit(main())
    except Fail as e:
        print(f"INTEROP_FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        print("INTEROP_FAIL: exception (see traceback)", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        os.chdir(start_dir)
        for d in WORK_DIRS:
            shutil.rmtree(d, ignore_errors=True)
