#!/usr/bin/env python3
"""Garbage-collection benchmark (stdlib only). Started by bench/gc.sh.

Seeds a bonded registry (filesystem + SQLite) with BENCH_GC_BLOBS blob rows (default 1,000,000;
small blobs) of which 10 % are unreferenced, all queued for collection (the worst case: every
blob had an event, e.g. right after the migration that introduced collection). Then:

1. idle: a server with collection off; two clients for BENCH_GC_SECS seconds each — one pulling
   manifests by tag, one pushing 4 KiB blobs — record per-request latency;
2. during GC: the same server restarted with collection on (grace 1 s): it starts a collection at
   once; the same load runs while it does; the run's mark and sweep times come from its log.

Prints p50/p99 for both, the ratio, the same split by what the collector was doing when each
request started (marking or sweeping, from the spans in its JSON log), and PASS/FAIL for the targets (mark under 60 s; p99
push/pull latency during GC within 1.5x of idle). Distribution's own GC is offline (the registry
must be stopped or read-only), so there is no peer figure for latency during collection.
"""
import datetime
import hashlib
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("BENCH_BONDED_BIN", "target/release/bonded")
N = int(os.environ.get("BENCH_GC_BLOBS", "1000000"))
SECS = float(os.environ.get("BENCH_GC_SECS", "20"))
PER_MANIFEST = 9
KEEP = os.environ.get("BENCH_KEEP") == "1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def start(data, port, gc_enabled, logfile):
    env = dict(os.environ)
    env.update({
        "BONDED_GC__ENABLED": "true" if gc_enabled else "false",
        "BONDED_AUTH__ENABLED": "false",
        "BONDED_GC__GRACE_SECS": "1",
        "BONDED_GC__INTERVAL_SECS": "0",
        # The collector's summary only: per-request logs would be most of the work.
        "RUST_LOG": "warn,bonded_service=info",
        # JSON lines carry a timestamp the phases are cut by.
        "BONDED_LOG__FORMAT": "json",
    })
    p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                         env=env, stdout=subprocess.DEVNULL, stderr=open(logfile, "w"))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/")
            if c.getresponse().status == 200:
                return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    sys.exit("bonded did not start")


def seed(data):
    """Rows straight into the SQLite schema bonded created: blobs, links, manifests, references,
    and a queue entry per blob. Unreferenced blobs get a file each (the sweep deletes them)."""
    db = sqlite3.connect(os.path.join(data, "bonded.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    old = int(time.time() * 1000) - 2 * 86400 * 1000
    db.execute("INSERT INTO repositories (id, name, created_at) VALUES (1, 'bench/gc', ?)", (old,))
    digests = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(N)]
    db.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, 1024, ?)",
                   ((d, old) for d in digests))
    db.executemany("INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (1, ?, ?)",
                   ((d, old) for d in digests))
    referenced = N * 9 // 10
    manifests = []
    for m in range(referenced // PER_MANIFEST):
        body = json.dumps({"schemaVersion": 2, "bench": m}).encode()
        md = "sha256:" + hashlib.sha256(body).hexdigest()
        manifests.append((md, body, digests[m * PER_MANIFEST:(m + 1) * PER_MANIFEST]))
    db.executemany(
        "INSERT INTO manifests (repo_id, digest, media_type, size, content, created_at)"
        " VALUES (1, ?, 'application/vnd.oci.image.manifest.v1+json', ?, ?, ?)",
        ((md, len(body), body, old) for md, body, _ in manifests))
    db.executemany("INSERT INTO manifest_refs (repo_id, manifest, child, kind) VALUES (1, ?, ?, 'blob')",
                   ((md, c) for md, _, cs in manifests for c in cs))
    db.executemany("INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (1, ?, ?, ?)",
                   ((f"t{i}", md, old) for i, (md, _, _) in enumerate(manifests[:1000])))
    db.execute("DELETE FROM gc_queue")
    db.executemany("INSERT INTO gc_queue (digest, due_at) VALUES (?, 0)", ((d,) for d in digests))
    db.commit()
    db.close()
    root = os.path.join(data, "blobs", "blobs", "sha256")
    for d in digests[referenced:]:
        h = d.split(":")[1]
        os.makedirs(os.path.join(root, h[:2]), exist_ok=True)
        with open(os.path.join(root, h[:2], h), "wb") as f:
            f.write(b"x" * 1024)
    return N - referenced


def load(port, stop, out):
    """Two clients: manifest GETs by tag and 4 KiB blob pushes, each timed."""
    def puller():
        c = http.client.HTTPConnection("127.0.0.1", port)
        i = 0
        while not stop.is_set():
            w, t = time.time(), time.perf_counter()
            c.request("GET", f"/v2/bench/gc/manifests/t{i % 1000}",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            out["pull"].append((w, time.perf_counter() - t))
            i += 1

    def pusher():
        c = http.client.HTTPConnection("127.0.0.1", port)
        while not stop.is_set():
            body = random.randbytes(4096)
            d = "sha256:" + hashlib.sha256(body).hexdigest()
            w, t = time.time(), time.perf_counter()
            c.request("POST", f"/v2/bench/gc/blobs/uploads/?digest={d}", body=body)
            r = c.getresponse()
            r.read()
            assert r.status == 201, r.status
            out["push"].append((w, time.perf_counter() - t))

    threads = [threading.Thread(target=puller), threading.Thread(target=pusher)]
    for t in threads:
        t.start()
    return threads


def pct(xs, p):
    xs = sorted(lat for _, lat in xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


def collections(logfile):
    """Each finished collection from the server's JSON log: its fields, and the wall-clock spans
    of its mark and sweep phases (the summary is logged when the sweep ends)."""
    runs = []
    with open(logfile) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            fields = ev.get("fields", {})
            if fields.get("message") != "garbage collection reclaimed blobs":
                continue
            end = datetime.datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp()
            sweep = int(fields["sweep_ms"]) / 1000
            mark = int(fields["mark_ms"]) / 1000
            runs.append(dict(fields, mark_span=(end - sweep - mark, end - sweep),
                             sweep_span=(end - sweep, end)))
    return runs


def within(xs, spans):
    return [(w, lat) for w, lat in xs if any(a <= w < b for a, b in spans)]


def main():
    tmp = tempfile.mkdtemp(prefix="bonded-gc-bench.")
    data = os.path.join(tmp, "data")
    port = 5000 + random.randrange(1000)
    p = start(data, port, False, os.path.join(tmp, "schema.log"))
    p.terminate()
    p.wait()
    t = time.time()
    garbage = seed(data)
    log(f"seeded {N} blobs ({garbage} unreferenced, all queued) in {time.time() - t:.0f}s")

    # Idle.
    p = start(data, port, False, os.path.join(tmp, "idle.log"))
    idle = {"pull": [], "push": []}
    stop = threading.Event()
    threads = load(port, stop, idle)
    time.sleep(SECS)
    stop.set()
    for th in threads:
        th.join()
    p.terminate()
    p.wait()

    # During a collection: it starts with the server.
    logfile = os.path.join(tmp, "gc.log")
    busy = {"pull": [], "push": []}
    stop = threading.Event()
    p = start(data, port, True, logfile)
    threads = load(port, stop, busy)
    # Collections run back to back: the first marks everything (and sweeps what was marked a
    # grace period before it finished), later ones sweep the rest. Done when all garbage is gone.
    deadline = time.time() + 900
    runs = []
    while time.time() < deadline:
        time.sleep(0.5)
        runs = collections(logfile)
        if sum(int(r["swept"]) for r in runs) >= garbage:
            break
    stop.set()
    for th in threads:
        th.join()
    p.terminate()
    p.wait()
    if not runs:
        sys.exit("no collection finished within 15 minutes")
    swept = sum(int(r["swept"]) for r in runs)
    mark_s = int(runs[0]["mark_ms"]) / 1000
    sweep_s = sum(int(r["sweep_ms"]) for r in runs) / 1000
    print(f"collection over {N} queued blobs: first run examined {runs[0]['examined']} and marked "
          f"{runs[0]['marked']} in {mark_s:.1f}s; {swept} of {garbage} unreferenced blobs swept "
          f"over {len(runs)} runs in {sweep_s:.1f}s of sweeping")
    ok = True
    for kind in ("pull", "push"):
        i50, i99 = pct(idle[kind], 0.5), pct(idle[kind], 0.99)
        b50, b99 = pct(busy[kind], 0.5), pct(busy[kind], 0.99)
        ratio = b99 / i99
        print(f"{kind:4}: idle p50 {i50:.2f} ms p99 {i99:.2f} ms ({len(idle[kind])} reqs); "
              f"during GC p50 {b50:.2f} ms p99 {b99:.2f} ms ({len(busy[kind])} reqs); "
              f"p99 ratio {ratio:.2f}x")
        good = ratio <= 1.5
        ok &= good
        print(f"{'PASS' if good else 'FAIL'}: {kind} p99 during GC within 1.5x of idle")
        for phase in ("mark", "sweep"):
            xs = within(busy[kind], [r[f"{phase}_span"] for r in runs])
            print(f"      while {phase:5}: p50 {pct(xs, 0.5):.2f} ms p99 {pct(xs, 0.99):.2f} ms "
                  f"({len(xs)} reqs); p99 ratio {pct(xs, 0.99) / i99:.2f}x")
    good = mark_s < 60
    print(f"{'PASS' if good else 'FAIL'}: mark under 60 s ({mark_s:.1f}s)")
    if swept < garbage:
        print(f"FAIL: swept {swept} of {garbage} unreferenced blobs")
    if not KEEP:
        subprocess.run(["rm", "-rf", tmp])
    else:
        log(f"kept {tmp}")


if __name__ == "__main__":
    main()
