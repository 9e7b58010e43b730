#!/usr/bin/env python3
"""bonded backend comparison: fs+SQLite vs S3+PostgreSQL, and 1 vs 3 S3+PostgreSQL nodes (stdlib only).
Started by bench/scaleout.sh, which provides Garage, PostgreSQL and a fresh database (BENCH_DB_URL,
BENCH_S3_PREFIX). Reuses the client helpers of bench.py. See bench/README.md."""

import json
import hashlib
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
from bench import MiB, MB, log, die, fmt, median, cpu_secs, spawn, wait_http, Server  # noqa: E402

BIN = bench.BENCH_BONDED_BIN
REPS = int(os.environ.get("BENCH_REPS", "2"))
BIG_MIB = int(os.environ.get("BENCH_BIG_MIB", "256"))
AGG_MIB = int(os.environ.get("BENCH_AGG_MIB", "64"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
NODES = int(os.environ.get("BENCH_NODES", "3"))
bench.WRK_SECS = int(os.environ.get("BENCH_WRK_SECS", "5"))
bench.WRK_THREADS = 2
bench.WRK_CONNS = 16
DB_URL = os.environ["BENCH_DB_URL"]
PREFIX = os.environ["BENCH_S3_PREFIX"]
OCI_MANIFEST = bench.OCI_MANIFEST


def base_env():
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("BONDED_") and not k.startswith("BONDED_TEST_"))}
    env.setdefault("RUST_LOG", "warn")
    return env


def s3pg_env():
    env = base_env()
    env.update({
        "BONDED_METADATA__URL": DB_URL,
        "BONDED_STORAGE__BACKEND": "s3",
        "BONDED_STORAGE__BUCKET": os.environ["BONDED_TEST_S3_BUCKET"],
        "BONDED_STORAGE__ENDPOINT": os.environ["BONDED_TEST_S3_ENDPOINT"],
        "BONDED_STORAGE__REGION": os.environ["BONDED_TEST_S3_REGION"],
        "BONDED_STORAGE__PATH_STYLE": "true",
        "BONDED_STORAGE__PREFIX": PREFIX,
    })
    return env


def start_node(name, env):
    env = dict(env)
    env.setdefault("BONDED_AUTH__ENABLED", "false")
    data = os.path.join(bench.TMP, name + "-data")
    p = spawn(name, [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
              stdout=subprocess.PIPE, env=env)
    found = {}

    def reader():
        for line in p.stdout:
            m = re.search(rb"listening on (http://\S+)", line)
            if m and "url" not in found:
                found["url"] = m.group(1).decode().rstrip("/")
    threading.Thread(target=reader, daemon=True).start()
    deadline = time.time() + 30
    while "url" not in found:
        if p.poll() is not None:
            die(f"{name} exited with {p.returncode}; log: "
                + open(os.path.join(bench.TMP, name + ".log"), errors="replace").read()[-2000:])
        if time.time() > deadline:
            die(f"{name} did not print its listen address within 30 s")
        time.sleep(0.05)
    wait_http(found["url"], "/v2/", p, name)
    return Server(name, found["url"], p)


def randfile(path, mib):
    with open(path, "wb") as f:
        f.write(os.urandom(mib * MiB))
    return bench.sha256_file(path)


def garage_pid():
    try:
        return int(open(os.path.join(os.environ.get("BONDED_GARAGE_DIR", "/tmp/bonded-garage"),
                                     "garage.pid")).read().strip())
    except (OSError, ValueError):
        return None


def main():
    signal.signal(signal.SIGTERM, bench.on_signal)
    signal.signal(signal.SIGHUP, bench.on_signal)
    bench.TMP = tempfile.mkdtemp(prefix="bonded-scaleout.", dir="/tmp")
    t_start = time.time()
    log(f"bonded scale-out bench  {time.strftime('%Y-%m-%d %H:%M:%S')}  tmp={bench.TMP}")
    log(f"machine: {os.cpu_count()} cpus; load average at start: {open('/proc/loadavg').read().split()[:3]}")
    log(f"S3: {os.environ['BONDED_TEST_S3_ENDPOINT']} bucket {os.environ['BONDED_TEST_S3_BUCKET']} "
        f"prefix {PREFIX};  PostgreSQL: {DB_URL}")

    # ---- data: REPS distinct big blobs (a fresh digest for every push), one blob for the aggregate pull
    t0 = time.perf_counter()
    bigs = [(p, randfile(p, BIG_MIB)) for p in
            (os.path.join(bench.TMP, f"big{r}") for r in range(REPS))]
    agg_path = os.path.join(bench.TMP, "agg")
    agg_digest = randfile(agg_path, AGG_MIB)
    os.sync()
    log(f"created {REPS} x {BIG_MIB} MiB + {AGG_MIB} MiB random files in {time.perf_counter() - t0:.1f}s")

    fs = start_node("fs-sqlite", base_env())
    s3 = [start_node(f"s3pg-{i}", s3pg_env()) for i in range(NODES)]
    pair = [fs, s3[0]]
    label = {fs.name: "fs+SQLite", s3[0].name: "S3+PG"}
    log("nodes: " + ", ".join(f"{s.name} {s.url}" for s in [fs] + s3))

    res = {}

    def rec(k, v):
        res.setdefault(k, []).append(v)

    big_bytes = BIG_MIB * MiB
    # ---- 1. single stream push/pull, one node each
    log(f"\n== 1. single-stream push then pull of a {BIG_MIB} MiB blob, one node each, {REPS} reps")
    for r in range(REPS):
        path, digest = bigs[r]
        for s in bench.order(pair, r):
            os.sync()
            c0 = cpu_secs(s.pid)
            dt = bench.push_file_timed(s, "bench/big", path, digest)
            cp = cpu_secs(s.pid) - c0
            c0 = cpu_secs(s.pid)
            dt2 = bench.pull_timed(f"{s.url}/v2/bench/big/blobs/{digest}", big_bytes)
            cl = cpu_secs(s.pid) - c0
            rec(("push", s.name), big_bytes / dt / MB)
            rec(("pull", s.name), big_bytes / dt2 / MB)
            log(f"  rep {r + 1} {label[s.name]:10} push {dt:6.2f}s {big_bytes / dt / MB:7.1f} MB/s (bonded CPU {cp:5.2f}s)"
                f"   pull {dt2:6.2f}s {big_bytes / dt2 / MB:7.1f} MB/s (bonded CPU {cl:5.2f}s)")

    # ---- manifest GET by tag
    log(f"\n== 1. manifest GET by tag, wrk -t2 -c16 -d{bench.WRK_SECS}s, {REPS} reps")
    config = b"{}"
    cfg_d = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": len(config)},
        "layers": [],
    }, separators=(",", ":")).encode()
    for s in pair:
        bench.push_small(s, "bench/man", config, cfg_d)
        st, _, body = s.req("PUT", "/v2/bench/man/manifests/latest", manifest, {"Content-Type": OCI_MANIFEST})
        if st != 201:
            die(f"{s.name}: manifest PUT -> {st} {body[:300]!r}")
        st, _, body = s.req("GET", "/v2/bench/man/manifests/latest", None, {"Accept": bench.ACCEPT})
        if st != 200 or body != manifest:
            die(f"{s.name}: manifest GET -> {st}, {len(body)} B")
    for r in range(REPS):
        for s in bench.order(pair, r):
            c0 = cpu_secs(s.pid)
            w = bench.wrk(f"{s.url}/v2/bench/man/manifests/latest")
            cg = cpu_secs(s.pid) - c0
            rec(("get", s.name), w["rps"])
            log(f"  rep {r + 1} {label[s.name]:10} GET {w['rps']:9.1f} req/s  p50 {w['p50']:6.2f} ms  p99 {w['p99']:7.2f} ms"
                f"  non-2xx {w['non2xx']} {w['sockerr']}  (bonded CPU {cg:5.2f}s)")
            if w["non2xx"]:
                log(f"  WARNING: {w['non2xx']} non-2xx responses")

    # ---- 2. aggregate pull, 1 vs NODES nodes of S3+PG
    agg_bytes = AGG_MIB * MiB
    log(f"\n== 2. aggregate pull: {CLIENTS} concurrent curl of one {AGG_MIB} MiB blob, S3+PG, "
        f"1 node vs {NODES} nodes (round-robin), {REPS} reps")
    bench.push_small(s3[0], "bench/agg", open(agg_path, "rb").read(), agg_digest)
    for s in s3:  # warm-up: every node serves it once (and sees the metadata) before timing
        bench.pull_timed(f"{s.url}/v2/bench/agg/blobs/{agg_digest}", agg_bytes)
    gp = garage_pid()
    configs = [("1", s3[:1]), (str(NODES), s3)]
    for r in range(REPS):
        for name, nodes in bench.order(configs, r):
            urls = [f"{nodes[i % len(nodes)].url}/v2/bench/agg/blobs/{agg_digest}" for i in range(CLIENTS)]
            c0 = sum(cpu_secs(s.pid) for s in s3)
            g0 = cpu_secs(gp) if gp else float("nan")
            dt = bench.parallel(lambda u: bench.pull_timed(u, agg_bytes), [(u,) for u in urls])
            cb = sum(cpu_secs(s.pid) for s in s3) - c0
            cg = (cpu_secs(gp) - g0) if gp else float("nan")
            mbs = CLIENTS * agg_bytes / dt / MB
            rec(("agg", name), mbs)
            log(f"  rep {r + 1} {name} node(s)  {dt:6.2f}s  {mbs:8.1f} MB/s   "
                f"(CPU: bonded {cb:5.2f}s, garage {fmt(cg, 2)}s, over {dt:.2f}s wall x 2 cores)")

    # ---- table
    m = {k: median(v) for k, v in res.items()}
    log(f"\n== results (median of {REPS} reps; higher is better)")
    log(f"{'workload':46} {'unit':6} {'fs+SQLite':>10} {'S3+PG':>10} {'S3+PG/fs':>9}")
    for lab, k, unit in [(f"push {BIG_MIB} MiB, single stream, 1 node", "push", "MB/s"),
                         (f"pull {BIG_MIB} MiB, single stream, 1 node", "pull", "MB/s"),
                         ("manifest GET by tag, wrk -t2 -c16, 1 node", "get", "req/s")]:
        a, b = m[(k, fs.name)], m[(k, s3[0].name)]
        log(f"{lab:46} {unit:6} {fmt(a):>10} {fmt(b):>10} {fmt(b / a if a else float('nan'), 2) + 'x':>9}")
    log("")
    log(f"{'workload (S3+PG)':46} {'unit':6} {'1 node':>10} {f'{NODES} nodes':>10} {f'{NODES}n/1n':>9}")
    a, b = m[("agg", "1")], m[("agg", str(NODES))]
    log(f"{f'aggregate pull, {CLIENTS} clients x {AGG_MIB} MiB':46} {'MB/s':6} {fmt(a):>10} {fmt(b):>10} "
        f"{fmt(b / a if a else float('nan'), 2) + 'x':>9}")
    log(f"\nNote: every process here (the {NODES + 1} bonded nodes, Garage, PostgreSQL, curl, wrk) shares the "
        f"machine's {os.cpu_count()} cores. {NODES} nodes cannot add CPU on this box, so the {NODES}-node figure "
        "shows the overhead of running several coordinated nodes, not horizontal scaling.")
    la = open('/proc/loadavg').read().split()[:3]
    log(f"load average at end: {la}" + ("  (WARNING: other work on the machine; figures disturbed)"
                                        if float(la[0]) > 1.5 * os.cpu_count() else ""))
    log(f"total time {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    try:
        main()
    finally:
        bench.cleanup()
