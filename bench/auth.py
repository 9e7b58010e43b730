#!/usr/bin/env python3
"""Manifest GET requests/s with access control off vs on: what token verification costs.

Starts bonded twice on fresh data directories, pushes one small image to each, and runs wrk
against `GET /v2/bench/app/manifests/v1` by tag:
  - off:    [auth] enabled = false, no Authorization header;
  - bearer: [auth] on, `Authorization: Bearer <token>` (a pull token from /auth/token);
  - basic:  [auth] on, HTTP Basic (argon2 once, then a cache keyed by the secret's SHA-256;
            the account row is still read per request).
Alternates the order over BENCH_AUTH_REPS repetitions and prints medians and the ratios.
Target (issue #4): bearer costs under 10 % (ratio >= 0.90).

Usage: bench/auth.sh (builds the release binary, installs wrk), or
       BENCH_BONDED_BIN=target/debug/bonded python3 bench/auth.py
"""
import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

REPS = int(os.environ.get("BENCH_AUTH_REPS", "3"))
PASSWORD = "bench-admin-password"


def start(name, auth):
    data = os.path.join(bench.TMP, name + "-data")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    env["BONDED_AUTH__ENABLED"] = "true" if auth else "false"
    env["BONDED_ADMIN_PASSWORD"] = PASSWORD
    # Tokens must outlive the run.
    env["BONDED_AUTH__TOKEN_TTL_SECS"] = "3600"
    p = bench.spawn(name, [bench.BENCH_BONDED_BIN, "serve", "--listen", "127.0.0.1:0",
                           "--data-dir", data], stdout=subprocess.PIPE, env=env)
    found = {}

    def reader():
        for line in p.stdout:
            m = re.search(rb"listening on (http://\S+)", line)
            if m and "url" not in found:
                found["url"] = m.group(1).decode().rstrip("/")
    threading.Thread(target=reader, daemon=True).start()
    deadline = time.time() + 30
    while "url" not in found:
        if p.poll() is not None or time.time() > deadline:
            bench.die(f"{name} did not start; see {bench.TMP}/{name}.log")
        time.sleep(0.05)
    return bench.Server(name, found["url"], p)


def push_image(srv, headers):
    layer = b"bench layer\n" * 64
    config = b"{}"
    for blob in (layer, config):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        st, _, body = srv.req("POST", f"/v2/bench/app/blobs/uploads/?digest={d}", blob,
                              {**headers, "Content-Type": "application/octet-stream"})
        if st != 201:
            bench.die(f"{srv.name}: blob push -> {st} {body[:200]!r}")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
    }).encode()
    st, _, body = srv.req("PUT", "/v2/bench/app/manifests/v1", manifest,
                          {**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if st != 201:
        bench.die(f"{srv.name}: manifest push -> {st} {body[:200]!r}")


def main():
    signal.signal(signal.SIGTERM, bench.on_signal)
    bench.TMP = tempfile.mkdtemp(prefix="bonded-bench-auth.", dir="/tmp")
    try:
        basic = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        off = start("auth-off", False)
        on = start("auth-on", True)
        push_image(off, {})
        push_image(on, {"Authorization": basic})
        st, _, body = on.req("GET", "/auth/token?service=bonded&scope=repository:bench/app:pull",
                             headers={"Authorization": basic})
        if st != 200:
            bench.die(f"token endpoint -> {st} {body[:200]!r}")
        token = json.loads(body)["token"]
        cases = [
            ("off", off, []),
            ("bearer", on, ["-H", f"Authorization: Bearer {token}"]),
            ("basic", on, ["-H", f"Authorization: {basic}"]),
        ]
        rps = {name: [] for name, _, _ in cases}
        for rep in range(REPS):
            for name, srv, extra in (cases if rep % 2 == 0 else list(reversed(cases))):
                r = bench.wrk(srv.url + "/v2/bench/app/manifests/v1", extra)
                if r["non2xx"] or r["sockerr"]:
                    bench.die(f"{name}: {r['non2xx']} non-2xx responses, socket errors {r['sockerr']}")
                rps[name].append(r["rps"])
                bench.log(f"rep {rep + 1} {name:<6} {r['rps']:10.0f} req/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms")
        med = {k: bench.median(v) for k, v in rps.items()}
        print()
        print(f"manifest GET by tag, {bench.WRK_CONNS} connections, {bench.WRK_SECS}s x {REPS}, "
              f"binary {bench.BENCH_BONDED_BIN}")
        for k in ("off", "bearer", "basic"):
            print(f"  {k:<7} {med[k]:10.0f} req/s   ratio to off {med[k] / med['off']:.3f}")
        cost = 1 - med["bearer"] / med["off"]
        verdict = "meets" if cost < 0.10 else "MISSES"
        print(f"bearer token verification costs {cost * 100:.1f} % of throughput ({verdict} the < 10 % target)")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
