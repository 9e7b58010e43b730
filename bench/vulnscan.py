#!/usr/bin/env python3
"""Server-path vulnerability rescan benchmark. Started by bench/vulnscan.sh.

Seeds a filesystem + SQLite registry through the real server's OCI API with BENCH_VULN_ARTIFACTS
artifacts (default 10,000), each with a DSSE-signed CycloneDX SBOM referrer of
BENCH_VULN_COMPONENTS components (default 300) under a key the namespace trusts, and builds an
OSV all.zip of BENCH_VULN_ADVISORIES synthetic advisories (default 200,000; the mix of
crates/vuln/examples/rescan_bench.rs: ~20 % of components are named like an advisory's package).
Then, with the server stopped (so nothing else competes for the CPU):

1. `bonded vulndb import all.zip` (timed);
2. `bonded vulndb rescan`: the first scan of every artifact (stored results and a signed report
   referrer each);
3. `bonded vulndb import delta.zip` (a few new advisories: the generation changes) and
   `bonded vulndb rescan` again — **the figure the issue asks for**: every stored SBOM rescanned
   after an import.

Each command runs under /usr/bin/time -v: wall time, per-artifact time and peak RSS are printed,
with PASS/FAIL for the issue's target (rescan under 60 s, under 1 GiB). Needs python3 with
`cryptography` (installed by scripts/install-test-tools.sh for the in-toto tests).
"""
import base64
import hashlib
import http.client
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

BIN = os.environ.get("BENCH_BONDED_BIN", "target/release/bonded")
N = int(os.environ.get("BENCH_VULN_ARTIFACTS", "10000"))
M = int(os.environ.get("BENCH_VULN_ADVISORIES", "200000"))
C = int(os.environ.get("BENCH_VULN_COMPONENTS", "300"))
REPOS = int(os.environ.get("BENCH_VULN_REPOS", "100"))
THREADS = int(os.environ.get("BENCH_VULN_THREADS", "4"))
KEEP = os.environ.get("BENCH_KEEP") == "1"
NAMES = 12000

ECOS = [("npm", 25), ("PyPI", 15), ("Maven", 15), ("Go", 10), ("crates.io", 5),
        ("Debian:12", 20), ("Alpine:v3.18", 10)]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pick_eco(r):
    x = r.randrange(100)
    for e, p in ECOS:
        if x < p:
            return e
        x -= p
    return "npm"


def name(e, i):
    if e == "npm":
        return f"@scope{i % 97}/pkg-{i}" if i % 5 == 0 else f"npm-pkg-{i}"
    if e == "PyPI":
        return f"py_pkg.{i}"
    if e == "Maven":
        return f"org.example{i % 113}:artifact-{i}"
    if e == "Go":
        return f"github.com/org{i % 89}/mod{i}"
    if e == "crates.io":
        return f"crate-{i}"
    return f"lib{i}"


def version(e, r):
    a, b, c = r.randrange(5), r.randrange(20), r.randrange(30)
    if e == "Go":
        return f"v{a}.{b}.{c}"
    if e == "Debian:12":
        return f"{a}.{b}.{c}-{r.randrange(4) + 1}"
    if e == "Alpine:v3.18":
        return f"{a}.{b}.{c}-r{r.randrange(5)}"
    return f"{a}.{b}.{c}"


def purl(e, n, v):
    if e == "npm":
        return f"pkg:npm/{n.replace('@', '%40')}@{v}"
    if e == "PyPI":
        return f"pkg:pypi/{n}@{v}"
    if e == "Maven":
        g, a = n.split(":")
        return f"pkg:maven/{g}/{a}@{v}"
    if e == "Go":
        return f"pkg:golang/{n}@{v}"
    if e == "crates.io":
        return f"pkg:cargo/{n}@{v}"
    if e == "Debian:12":
        return f"pkg:deb/debian/{n}@{v}?arch=amd64&distro=debian-12"
    return f"pkg:apk/alpine/{n}@{v}?arch=x86_64&distro=alpine-3.18"


def advisory(r, n, modified="2024-06-01T00:00:00Z"):
    e = pick_eco(r)
    pkg = name(e, r.randrange(NAMES))
    ranges = []
    for k in range(1 + r.randrange(3)):
        intro = "0" if k == 0 and r.randrange(2) == 0 else version(e, r)
        end = {"last_affected" if r.randrange(10) == 0 else "fixed": version(e, r)}
        ranges.append({"type": "SEMVER" if e in ("Go", "crates.io") else "ECOSYSTEM",
                       "events": [{"introduced": intro}, end]})
    rec = {
        "schema_version": "1.6.0", "id": f"SYN-{n:07d}", "modified": modified,
        "aliases": [f"CVE-2024-{n:05d}"],
        "summary": f"Synthetic advisory {n} affecting {pkg}: a realistic-length summary line",
        "details": "Long details are dropped by the compact form." * 8,
        "affected": [{"package": {"ecosystem": e, "name": pkg}, "ranges": ranges}],
        "database_specific": {"severity": "HIGH"},
    }
    if r.randrange(2) == 0:
        rec["severity"] = [{"type": "CVSS_V3",
                            "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]
    if r.randrange(10) == 0:
        rec["affected"][0]["versions"] = [version(e, r) for _ in range(20)]
    return rec


def write_zip(path, first, count, seed):
    r = random.Random(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for n in range(first, first + count):
            z.writestr(f"SYN-{n:07d}.json", json.dumps(advisory(r, n)))


def components(r):
    out = []
    for _ in range(C):
        e = pick_eco(r)
        # ~20 % named like an advisory's package, the rest not in the database.
        i = r.randrange(NAMES) if r.randrange(5) == 0 else NAMES + r.randrange(10**6)
        n = name(e, i)
        v = version(e, r)
        out.append({"type": "library", "name": n, "version": v, "purl": purl(e, n, v)})
    return out


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def pae(t, body):
    t = t.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=body, headers=headers or {})
        resp = self.c.getresponse()
        data = resp.read()
        return resp.status, data

    def blob(self, repo, data):
        d = sha(data)
        s, body = self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                           {"Content-Type": "application/octet-stream"})
        if s != 201:
            sys.exit(f"blob upload to {repo}: {s} {body[:200]!r}")
        return d, len(data)

    def manifest(self, repo, ref, m):
        data = json.dumps(m, separators=(",", ":")).encode()
        s, body = self.req("PUT", f"/v2/{repo}/manifests/{ref}", data,
                           {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        if s != 201:
            sys.exit(f"manifest PUT {repo}:{ref}: {s} {body[:200]!r}")
        return sha(data), len(data)


def push_all(port, key, keyid, seed_base):
    empty = b"{}"
    done = [0]
    lock = threading.Lock()

    def work(worker):
        cl = Client(port)
        r = random.Random(seed_base + worker)
        pushed_empty = set()
        for i in range(worker, N, THREADS):
            repo = f"bench/app{i % REPOS}"
            if repo not in pushed_empty:
                cl.blob(repo, empty)
                pushed_empty.add(repo)
            layer, lsize = cl.blob(repo, f"artifact {i}".encode())
            man = {
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                           "digest": sha(empty), "size": 2},
                "layers": [{"mediaType": "application/octet-stream", "digest": layer,
                            "size": lsize}],
            }
            digest, msize = cl.manifest(repo, f"v{i}", man)
            statement = {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": repo, "digest": {"sha256": digest.split(":")[1]}}],
                "predicateType": "https://cyclonedx.org/bom",
                "predicate": {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                              "components": components(r)},
            }
            payload = json.dumps(statement, separators=(",", ":")).encode()
            ptype = "application/vnd.in-toto+json"
            sig = key.sign(pae(ptype, payload))
            envelope = json.dumps({
                "payload": base64.b64encode(payload).decode(), "payloadType": ptype,
                "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
            }).encode()
            env_digest, env_size = cl.blob(repo, envelope)
            ref = {
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.bonded.sbom.v1+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                           "digest": sha(empty), "size": 2},
                "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json",
                            "digest": env_digest, "size": env_size,
                            "annotations": {"in-toto.io/predicate-type":
                                            "https://cyclonedx.org/bom"}}],
                "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": digest, "size": msize},
                "annotations": {"dev.bonded.key-id": keyid},
            }
            rd = sha(json.dumps(ref, separators=(",", ":")).encode())
            cl.manifest(repo, rd, ref)
            with lock:
                done[0] += 1
                if done[0] % 1000 == 0:
                    log(f"  pushed {done[0]}/{N}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if done[0] != N:
        sys.exit(f"only {done[0]} of {N} artifacts were pushed")


def ed25519_key(path):
    """The Ed25519 key of `bonded key generate`'s PKCS#8 v2 PEM (with the public key attached,
    which `cryptography` does not parse): the 32-byte seed after the OID 1.3.101.112."""
    with open(path) as f:
        der = base64.b64decode("".join(l for l in f if not l.startswith("-----")))
    at = der.index(b"\x06\x03\x2b\x65\x70")
    seed_at = der.index(b"\x04\x20", at) + 2
    return Ed25519PrivateKey.from_private_bytes(der[seed_at:seed_at + 32])


def timed(args, env):
    """Runs bonded under /usr/bin/time -v: (wall seconds, peak RSS KiB, stdout)."""
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-v", BIN] + args, env=env, capture_output=True,
                       text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"bonded {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return wall, rss, p.stdout.strip()


def main():
    work = tempfile.mkdtemp(prefix="bonded-vulnbench-")
    data = os.path.join(work, "data")
    env = dict(os.environ)
    env.update({"BONDED_AUTH__ENABLED": "false", "BONDED_SCAN__ENABLED": "false",
                "BONDED_GC__ENABLED": "false", "RUST_LOG": "warn"})
    log(f"workdir {work}: {N} artifacts x {C} components, {M} advisories")

    t0 = time.time()
    write_zip(os.path.join(work, "all.zip"), 0, M, 1)
    write_zip(os.path.join(work, "delta.zip"), M, max(1, M // 1000), 2)
    log(f"advisory archives written in {time.time() - t0:.1f}s")

    out = subprocess.run([BIN, "key", "generate", "--out", os.path.join(work, "k")],
                         capture_output=True, text=True, check=True).stdout
    keyid = out.strip().split()[-1]
    key = ed25519_key(os.path.join(work, "k.pem"))

    port = 20000 + os.getpid() % 20000
    server = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen",
                               f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "server.log"), "w"))
    try:
        deadline = time.time() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v2/")
                if c.getresponse().status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    sys.exit("bonded did not start")
                time.sleep(0.1)
        subprocess.run([BIN, "trust", "add", f"127.0.0.1:{port}/bench", "--key-set", "ci",
                        "--key", os.path.join(work, "k.pub.pem")], env=env, check=True,
                       capture_output=True)
        t0 = time.time()
        push_all(port, key, keyid, 7)
        log(f"pushed {N} artifacts with signed SBOMs in {time.time() - t0:.1f}s")
    finally:
        server.terminate()
        server.wait()

    flags = ["--data-dir", data]
    wall, rss, out = timed(["vulndb", "import", os.path.join(work, "all.zip")] + flags, env)
    print(f"import {M} advisories:      {wall:7.1f} s   peak RSS {rss / 1024:7.0f} MiB")
    log(out)
    wall, rss, out = timed(["vulndb", "rescan"] + flags, env)
    print(f"first scan of {N} artifacts: {wall:7.1f} s   {1000 * wall / N:6.2f} ms/artifact   "
          f"peak RSS {rss / 1024:7.0f} MiB   ({out})")
    wall, rss, out = timed(["vulndb", "import", os.path.join(work, "delta.zip")] + flags, env)
    print(f"import delta:               {wall:7.1f} s   ({out.splitlines()[-1]})")
    wall, rss, out = timed(["vulndb", "rescan"] + flags, env)
    print(f"rescan of {N} artifacts:     {wall:7.1f} s   {1000 * wall / N:6.2f} ms/artifact   "
          f"peak RSS {rss / 1024:7.0f} MiB   ({out})")
    db = sqlite3.connect(os.path.join(data, "bonded.db"))
    scans, sboms, comps, gens = db.execute(
        "SELECT COUNT(*), SUM(sboms), SUM(components), COUNT(DISTINCT generation) "
        "FROM vuln_scans").fetchone()
    findings = sum(len(json.loads(f)) for (f,) in db.execute("SELECT findings FROM vuln_scans"))
    print(f"stored scans {scans}, verified SBOMs {sboms}, components {comps}, "
          f"findings {findings}")
    if scans != N or sboms != N or gens != 1:
        sys.exit(f"expected {N} scans of one verified SBOM each at one generation")
    ok = wall < 60 and rss < 1024 * 1024
    full = N >= 10000 and M >= 200000 and C >= 300
    verdict = "PASS" if ok else "FAIL"
    print(f"target (rescan under 60 s, under 1 GiB): {verdict}"
          + ("" if full else " (reduced size: not the issue's figure)"))
    if KEEP:
        log(f"kept {work}")
    else:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
