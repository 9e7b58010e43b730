#!/usr/bin/env python3
"""bonded vs docker-registry benchmark driver (stdlib only). Started by bench/run.sh.

Runs both registries side by side on loopback, the same workloads against each (alternating which
goes first every repetition), measures this machine's ceilings (SHA-256, durable write, nginx
sendfile, nginx small static GET) in the same run, and prints raw numbers, medians, ratios and the
pass/fail lines of the performance targets. See bench/README.md.
"""

import http.client
import json
import os
import re
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MiB = 1 << 20
MB = 1_000_000

# Knobs (environment).
BENCH_BONDED_BIN = os.environ.get("BENCH_BONDED_BIN", os.path.join(ROOT, "target", "release", "bonded"))
ONLY = os.environ.get("BENCH_ONLY", "")  # "docker-registry" or "bonded": run one registry only (testing)
BIG_BYTES = int(os.environ.get("BENCH_BIG_MIB", "1024")) * MiB
SMALL_MIB = int(os.environ.get("BENCH_SMALL_MIB", "64"))
CONC = int(os.environ.get("BENCH_CONC", "8"))
REPS_A = int(os.environ.get("BENCH_REPS_A", "3"))
REPS_B = int(os.environ.get("BENCH_REPS_B", "2"))  # each rep pushes CONC fresh blobs
REPS_C = int(os.environ.get("BENCH_REPS_C", "2"))
REPS_D = int(os.environ.get("BENCH_REPS_D", "5"))
WRK_SECS = int(os.environ.get("BENCH_WRK_SECS", "8"))
WRK_CONNS = int(os.environ.get("BENCH_WRK_CONNS", "16"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
NTAGS = int(os.environ.get("BENCH_NTAGS", "10000"))
PAGE = int(os.environ.get("BENCH_PAGE", "1000"))
KEEP = os.environ.get("BENCH_KEEP") == "1"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])

procs = []  # (name, Popen) of everything we started
TMP = None


def log(*a):
    print(*a, flush=True)


def die(msg):
    log("FATAL: " + msg)
    sys.exit(1)


def cleanup():
    for name, p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for name, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    procs.clear()
    if TMP and os.path.isdir(TMP):
        if KEEP:
            log(f"(kept {TMP})")
        else:
            shutil.rmtree(TMP, ignore_errors=True)


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def cpu_secs(pid):
    """utime+stime of a process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=1):
    if x != x:
        return "n/a"
    return f"{x:,.{nd}f}"



class CpuMonitor(threading.Thread):
    """Samples /proc every second and charges CPU time used by processes that are not ours (not
    descendants of this script) to the current section, so a noisy neighbour (e.g. a cargo build)
    shows up in the report instead of silently skewing the figures."""

    def __init__(self):
        super().__init__(daemon=True)
        self.section = "setup"
        self.foreign = {}   # section -> foreign CPU seconds
        self.wall = {}      # section -> wall seconds
        self.top = {}       # comm -> foreign CPU seconds
        self.kernel = 0.0   # CPU seconds of kernel threads (not counted as foreign)
        self.hz = os.sysconf("SC_CLK_TCK")
        self.me = os.getpid()
        self.prev = self.snapshot()
        self.t = time.time()
        self.stop = threading.Event()

    @staticmethod
    def snapshot():
        snap = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            fl = raw.rsplit(")", 1)[1].split()
            snap[int(d)] = (int(fl[11]) + int(fl[12]), int(fl[1]), comm)
        return snap

    def ours(self, pid, snap):
        for _ in range(64):
            if pid == self.me:
                return True
            if pid not in snap or pid <= 1:
                return False
            pid = snap[pid][1]
        return False

    def tick(self):
        cur, now = self.snapshot(), time.time()
        sec = self.section
        self.wall[sec] = self.wall.get(sec, 0) + now - self.t
        for pid, (ticks, _, comm) in cur.items():
            d = ticks - self.prev.get(pid, (0,))[0]
            if d > 0 and (pid == 2 or cur[pid][1] == 2):  # kernel threads (writeback, etc.)
                self.kernel += d / self.hz
            elif d > 0 and not self.ours(pid, cur):
                self.foreign[sec] = self.foreign.get(sec, 0) + d / self.hz
                self.top[comm] = self.top.get(comm, 0) + d / self.hz
        self.prev, self.t = cur, now

    def run(self):
        while not self.stop.wait(1.0):
            self.tick()

    def set(self, section):
        self.section = section

    def report(self):
        self.stop.set()
        self.tick()
        tot_f, tot_w = sum(self.foreign.values()), sum(self.wall.values())
        parts = [f"{k} {self.foreign.get(k, 0):.1f}s/{self.wall[k]:.0f}s" for k in self.wall]
        top = sorted(self.top.items(), key=lambda kv: -kv[1])[:5]
        log(f"  CPU used by other processes on this machine (not ours): {tot_f:.1f} s over {tot_w:.0f} s "
            f"= {100 * tot_f / max(tot_w, 1e-9):.0f}% of one core")
        log("    by section (foreign CPU / wall): " + ", ".join(parts))
        log("    top: " + ", ".join(f"{c} {v:.1f}s" for c, v in top)
            + f";  kernel threads (not counted) {self.kernel:.1f}s")
        if tot_f / max(tot_w, 1e-9) > 0.10:
            log("  WARNING: other processes used >10% of a core during the run; the figures are disturbed")


MON = None

# ----------------------------------------------------------------------------- servers

class Server:
    def __init__(self, name, url, proc):
        self.name, self.url, self.proc = name, url, proc
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port

    @property
    def pid(self):
        return self.proc.pid

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def req(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, r.headers, data


def spawn(name, argv, stdout=None, env=None):
    logf = open(os.path.join(TMP, f"{name}.log"), "ab")
    p = subprocess.Popen(argv, stdout=stdout or logf, stderr=logf, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    procs.append((name, p))
    return p


def wait_http(url, path, proc, what, timeout=30):
    u = urllib.parse.urlsplit(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"{what} exited with {proc.returncode}; see its log in the temp dir")
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    die(f"{what} did not answer on {url}{path}")


def start_bonded():
    data = os.path.join(TMP, "bonded-data")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    # The comparison is against an open docker-registry: run bonded open too.
    env.setdefault("BONDED_AUTH__ENABLED", "false")
    p = spawn("bonded", [BENCH_BONDED_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
              stdout=subprocess.PIPE, env=env)
    found = {}

    def reader():
        with open(os.path.join(TMP, "bonded.stdout"), "wb") as out:
            for line in p.stdout:
                out.write(line)
                out.flush()
                m = re.search(rb"listening on (http://\S+)", line)
                if m and "url" not in found:
                    found["url"] = m.group(1).decode().rstrip("/")
    threading.Thread(target=reader, daemon=True).start()
    deadline = time.time() + 30
    while "url" not in found:
        if p.poll() is not None:
            die(f"bonded exited with {p.returncode} before listening; see {TMP}/bonded.log")
        if time.time() > deadline:
            die("bonded did not print 'bonded listening on http://...' within 30 s")
        time.sleep(0.05)
    url = found["url"]
    if not re.match(r"^http://127\.0\.0\.1:\d+$", url):
        die(f"bonded listens on {url}, expected 127.0.0.1")
    wait_http(url, "/v2/", p, "bonded")
    return Server("bonded", url, p)


def start_docker_registry():
    port = free_port()
    data = os.path.join(TMP, "docker-registry-data")
    os.makedirs(data)
    cfg = os.path.join(TMP, "docker-registry.yml")
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  secret: bonded-bench-not-a-secret
""")
    p = spawn("docker-registry", ["docker-registry", "serve", cfg])
    url = f"http://127.0.0.1:{port}"
    wait_http(url, "/v2/", p, "docker-registry")
    return Server("docker-registry", url, p)


def start_nginx(www):
    port = free_port()
    prefix = os.path.join(TMP, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  types {{ application/vnd.oci.image.manifest.v1+json json; }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {www};
  }}
}}
""")
    p = spawn("nginx", ["nginx", "-p", prefix + "/", "-e", prefix + "/logs/error.log", "-c", conf])
    url = f"http://127.0.0.1:{port}"
    wait_http(url, "/", p, "nginx")
    return Server("nginx", url, p)


# ----------------------------------------------------------------------------- registry ops

def push_small(srv, repo, data, digest, conn=None):
    """POST then PUT ?digest= with the body, via http.client (setup only, not timed)."""
    st, h, _ = srv.req("POST", f"/v2/{repo}/blobs/uploads/", b"", {"Content-Length": "0"}, conn)
    if st != 202:
        die(f"{srv.name}: POST upload -> {st}")
    loc = upload_url(srv, h["Location"], digest)
    u = urllib.parse.urlsplit(loc)
    st, _, body = srv.req("PUT", u.path + "?" + u.query, data,
                          {"Content-Type": "application/octet-stream"}, conn)
    if st != 201:
        die(f"{srv.name}: PUT blob -> {st} {body[:200]!r}")


def upload_url(srv, location, digest):
    loc = urllib.parse.urljoin(srv.url + "/", location)
    return loc + ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest, safe=":")


def push_file_timed(srv, repo, path, digest):
    """One push as a client does it: POST (start upload), then PUT <location>?digest= streaming the
    file with curl -T. Returns seconds from the POST to the 201."""
    t0 = time.perf_counter()
    st, h, _ = srv.req("POST", f"/v2/{repo}/blobs/uploads/", b"", {"Content-Length": "0"})
    if st != 202:
        raise RuntimeError(f"{srv.name}: POST upload -> {st}")
    url = upload_url(srv, h["Location"], digest)
    out = subprocess.run(["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "-X", "PUT",
                          "-T", path, "-H", "Content-Type: application/octet-stream",
                          "-H", "Expect:", url], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.stdout.strip() != "201":
        raise RuntimeError(f"{srv.name}: PUT {os.path.basename(path)} -> {out.stdout} {out.stderr}")
    return dt


def pull_timed(url, size):
    t0 = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "-o", os.devnull, "-w", "%{http_code} %{size_download}",
                          url], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    code, got = (out.stdout.split() + ["", ""])[:2]
    if code != "200" or int(got or 0) != size:
        raise RuntimeError(f"GET {url} -> {out.stdout} {out.stderr}")
    return dt


def parallel(fn, args):
    """Run fn(*a) for every a concurrently (threads that each wait on a curl); wall seconds."""
    errs = []

    def run(a):
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=run, args=(a,)) for a in args]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errs:
        raise errs[0]
    return dt


def timed_sync():
    t0 = time.perf_counter()
    os.sync()
    return time.perf_counter() - t0


def wrk(url, extra=(), env=None):
    """Runs wrk; returns (requests/s, non-2xx count, socket-error summary, p50 ms, p99 ms)."""
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNS}", f"-d{WRK_SECS}s", "--latency",
            "-H", f"Accept: {ACCEPT}", *extra, url]
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    txt = out.stdout + out.stderr
    m = re.search(r"Requests/sec:\s+([\d.]+)", txt)
    if not m:
        raise RuntimeError("wrk output not understood:\n" + txt)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", txt)
    sock = re.search(r"Socket errors:(.*)", txt)

    def lat(p):
        mm = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", txt, re.M)
        if not mm:
            return float("nan")
        v = float(mm.group(1))
        return v / 1000 if mm.group(2) == "us" else v * 1000 if mm.group(2) == "s" else v
    total = re.search(r"(\d+) requests in", txt)
    return {
        "rps": float(m.group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "sockerr": sock.group(1).strip() if sock else "",
        "p50": lat(50), "p99": lat(99),
        "requests": int(total.group(1)) if total else 0,
    }


# ----------------------------------------------------------------------------- results

results = {}   # (workload, server) -> list of values (higher is better)
units = {}


def record(key, srv, value, unit):
    results.setdefault((key, srv), []).append(value)
    units[key] = unit


def order(servers, rep):
    return servers if rep % 2 == 0 else list(reversed(servers))


def main():
    global TMP
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    TMP = tempfile.mkdtemp(prefix="bonded-bench.", dir="/tmp")
    mon = CpuMonitor()
    mon.start()
    t_start = time.time()
    log(f"bonded bench  {time.strftime('%Y-%m-%d %H:%M:%S')}  tmp={TMP}")
    log(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
    log(f"machine: {os.cpu_count()} cpus, {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
    ver = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True).stdout.strip()
    log(f"docker-registry: {ver};  nginx: "
        + subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        + f";  bonded: {BENCH_BONDED_BIN if ONLY != 'docker-registry' else '(skipped)'}")

    # ---- data
    big = os.path.join(TMP, "blob-1g")
    t0 = time.perf_counter()
    subprocess.run(["head", "-c", str(BIG_BYTES), "/dev/urandom"], stdout=open(big, "wb"), check=True)
    log(f"created {BIG_BYTES // MiB} MiB random file in {time.perf_counter() - t0:.1f}s")
    pieces_dir = os.path.join(TMP, "pieces")
    os.makedirs(pieces_dir)
    nsmall = CONC * REPS_B
    small_bytes = SMALL_MIB * MiB
    if nsmall * small_bytes > BIG_BYTES:
        die("not enough data for the concurrent pieces; raise BENCH_BIG_MIB")
    with open(big, "rb") as f:
        for i in range(nsmall):
            with open(os.path.join(pieces_dir, f"p{i:02d}"), "wb") as o:
                o.write(f.read(small_bytes))
    os.sync()

    # ---- ceilings
    mon.set("ceilings")
    log("\n== machine ceilings (same run)")
    t0 = time.perf_counter()
    out = subprocess.run(["sha256sum", big], capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t0
    big_digest = "sha256:" + out.stdout.split()[0]
    sha256sum_mbs = BIG_BYTES / dt / MB
    out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "3"],
                         capture_output=True, text=True)
    m = re.search(r"^sha256\s+([\d.]+)k", out.stdout, re.M)
    openssl_mbs = float(m.group(1)) * 1000 / MB if m else float("nan")
    sha_mbs = max(openssl_mbs, sha256sum_mbs) if openssl_mbs == openssl_mbs else sha256sum_mbs
    ddout = os.path.join(TMP, "dd.out")
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={big}", f"of={ddout}", "bs=4M", "conv=fsync"],
                   capture_output=True, check=True)
    dd_mbs = BIG_BYTES / (time.perf_counter() - t0) / MB
    os.unlink(ddout)
    os.sync()
    push_ceiling = min(sha_mbs, dd_mbs)
    log(f"sha256 single core:  openssl speed -evp sha256 (1 MiB blocks) {fmt(openssl_mbs)} MB/s;"
        f"  sha256sum of the 1 GiB file {fmt(sha256sum_mbs)} MB/s")
    log(f"durable write:       dd bs=4M conv=fsync of the 1 GiB file {fmt(dd_mbs)} MB/s")
    log(f"push ceiling = min(sha256 {fmt(sha_mbs)}, durable write {fmt(dd_mbs)}) = {fmt(push_ceiling)} MB/s")

    small_digests = [sha256_file(os.path.join(pieces_dir, f"p{i:02d}")) for i in range(nsmall)]

    # manifest + its blobs
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(2048)
    cfg_d = "sha256:" + hashlib.sha256(config).hexdigest()
    lay_d = "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": lay_d, "size": len(layer)}],
        "annotations": {"org.opencontainers.image.description": "bonded benchmark manifest"},
    }, indent=2).encode()
    man_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    man_file = os.path.join(TMP, "manifest.json")
    with open(man_file, "wb") as f:
        f.write(manifest)

    www = os.path.join(TMP, "www")
    os.makedirs(www)
    os.chmod(TMP, 0o755)  # nginx workers run as nobody when started by root
    for p in (www, big, man_file):
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    os.link(big, os.path.join(www, "blob-1g"))
    for i in range(CONC):
        os.link(os.path.join(pieces_dir, f"p{i:02d}"), os.path.join(www, f"p{i:02d}"))
    shutil.copy(man_file, os.path.join(www, "manifest.json"))
    ngx = start_nginx(www)
    ceil = {}
    xs = [BIG_BYTES / pull_timed(ngx.url + "/blob-1g", BIG_BYTES) / MB for _ in range(3)]
    ceil["pull_1g"] = median(xs)
    log(f"sendfile pull (nginx, 1 GiB, curl -o /dev/null): {fmt(ceil['pull_1g'])} MB/s  raw {[round(x) for x in xs]}")
    xs = []
    for _ in range(2):
        dt = parallel(lambda i: pull_timed(f"{ngx.url}/p{i:02d}", small_bytes), [(i,) for i in range(CONC)])
        xs.append(CONC * small_bytes / dt / MB)
    ceil["pull_conc"] = median(xs)
    log(f"sendfile pull (nginx, {CONC}x{SMALL_MIB} MiB concurrent): {fmt(ceil['pull_conc'])} MB/s  raw {[round(x) for x in xs]}")
    w = wrk(ngx.url + "/manifest.json")
    ceil["get"] = w["rps"]
    log(f"static small GET (nginx, {len(manifest)} B manifest, wrk -t{WRK_THREADS} -c{WRK_CONNS} {WRK_SECS}s): "
        f"{fmt(w['rps'])} req/s  p50 {fmt(w['p50'], 2)} ms  p99 {fmt(w['p99'], 2)} ms")
    ceil["push_1g"] = push_ceiling
    ceil["push_conc"] = min(sha_mbs * (os.cpu_count() or 1), dd_mbs)
    log(f"concurrent push ceiling = min(sha256 x {os.cpu_count()} cores, durable write) = {fmt(ceil['push_conc'])} MB/s")
    # nginx stays idle from here on; stop it so it cannot disturb the registries.
    ngx.proc.terminate()
    ngx.proc.wait()

    # ---- registries
    servers = []
    if ONLY != "docker-registry":
        servers.append(start_bonded())
    if ONLY != "bonded":
        servers.append(start_docker_registry())
    log("\nregistries: " + ", ".join(f"{s.name} {s.url} (pid {s.pid})" for s in servers))
    names = [s.name for s in servers]
    cpu = {}  # (workload, server) -> server CPU seconds per trial

    def note_cpu(key, s, c0):
        cpu.setdefault((key, s.name), []).append(cpu_secs(s.pid) - c0)

    # manifests' blobs in every repo that gets manifests
    def prep_repo(s, repo):
        push_small(s, repo, config, cfg_d)
        push_small(s, repo, layer, lay_d)

    mon.set("a")
    # (a) single stream 1 GiB
    log(f"\n== (a) single-stream push + pull of a {BIG_BYTES // MiB} MiB blob, {REPS_A} reps "
        "(rep 1 is a new blob; later reps push the same bytes into a new repository)")
    for rep in range(REPS_A):
        for s in order(servers, rep):
            repo = f"bench/big-r{rep}"
            timed_sync()
            c0 = cpu_secs(s.pid)
            dt = push_file_timed(s, repo, big, big_digest)
            note_cpu("push_1g", s, c0)
            sync_s = timed_sync()
            record("push_1g", s.name, BIG_BYTES / dt / MB, "MB/s")
            record("push_1g_durable", s.name, BIG_BYTES / (dt + sync_s) / MB, "MB/s")
            c0 = cpu_secs(s.pid)
            dt2 = pull_timed(f"{s.url}/v2/{repo}/blobs/{big_digest}", BIG_BYTES)
            note_cpu("pull_1g", s, c0)
            record("pull_1g", s.name, BIG_BYTES / dt2 / MB, "MB/s")
            log(f"  rep {rep + 1} {s.name:16} push {dt:6.2f}s {BIG_BYTES / dt / MB:8.1f} MB/s "
                f"(+sync after {sync_s:5.2f}s)   pull {dt2:6.2f}s {BIG_BYTES / dt2 / MB:8.1f} MB/s")

    mon.set("b")
    # (b) CONC concurrent pushes + pulls
    log(f"\n== (b) {CONC} concurrent pushes then {CONC} concurrent pulls of {SMALL_MIB} MiB blobs "
        f"(distinct new blobs every rep), {REPS_B} reps")
    for rep in range(REPS_B):
        idx = list(range(rep * CONC, (rep + 1) * CONC))
        for s in order(servers, rep):
            repo = f"bench/conc-r{rep}"
            timed_sync()
            c0 = cpu_secs(s.pid)
            dt = parallel(lambda i: push_file_timed(s, repo, os.path.join(pieces_dir, f"p{i:02d}"),
                                                    small_digests[i]), [(i,) for i in idx])
            note_cpu("push_conc", s, c0)
            sync_s = timed_sync()
            record("push_conc", s.name, CONC * small_bytes / dt / MB, "MB/s")
            c0 = cpu_secs(s.pid)
            dt2 = parallel(lambda i: pull_timed(f"{s.url}/v2/{repo}/blobs/{small_digests[i]}", small_bytes),
                           [(i,) for i in idx])
            note_cpu("pull_conc", s, c0)
            record("pull_conc", s.name, CONC * small_bytes / dt2 / MB, "MB/s")
            log(f"  rep {rep + 1} {s.name:16} push {dt:6.2f}s {CONC * small_bytes / dt / MB:8.1f} MB/s "
                f"(+sync after {sync_s:5.2f}s)   pull {dt2:6.2f}s {CONC * small_bytes / dt2 / MB:8.1f} MB/s")

    mon.set("c")
    # (c) manifests
    log(f"\n== (c) manifest PUT and GET-by-tag, wrk -t{WRK_THREADS} -c{WRK_CONNS} -d{WRK_SECS}s, "
        f"{len(manifest)} B OCI image manifest, {REPS_C} reps")
    log("   PUT: every request PUTs the same manifest bytes under a new, distinct tag (put_manifest.lua)")
    for s in servers:
        prep_repo(s, "bench/man")
        prep_repo(s, "bench/put")
        st, _, body = s.req("PUT", "/v2/bench/man/manifests/latest", manifest, {"Content-Type": OCI_MANIFEST})
        if st != 201:
            die(f"{s.name}: manifest PUT -> {st} {body[:300]!r}")
        st, h, body = s.req("GET", "/v2/bench/man/manifests/latest", None, {"Accept": ACCEPT})
        if st != 200 or body != manifest:
            die(f"{s.name}: manifest GET -> {st}, {len(body)} B (expected the {len(manifest)} B put)")
        if h.get("Docker-Content-Digest") != man_digest:
            log(f"  note: {s.name} Docker-Content-Digest {h.get('Docker-Content-Digest')} != {man_digest}")
    put_requests = {}
    for rep in range(REPS_C):
        for s in order(servers, rep):
            c0 = cpu_secs(s.pid)
            w = wrk(f"{s.url}/v2/bench/man/manifests/latest")
            note_cpu("get", s, c0)
            record("get", s.name, w["rps"], "req/s")
            log(f"  rep {rep + 1} {s.name:16} GET  {w['rps']:9.1f} req/s  p50 {w['p50']:6.2f} ms  p99 {w['p99']:7.2f} ms"
                f"  non-2xx {w['non2xx']}  {w['sockerr']}")
            if w["non2xx"]:
                log(f"  WARNING: {s.name} answered {w['non2xx']} GETs with non-2xx")
        for s in order(servers, rep):
            env = dict(os.environ, BENCH_MANIFEST=man_file, BENCH_CTYPE=OCI_MANIFEST,
                       BENCH_REPO="bench/put", BENCH_TAG_PREFIX=f"put-r{rep}")
            timed_sync()
            c0 = cpu_secs(s.pid)
            w = wrk(f"{s.url}/v2/", ["-s", os.path.join(HERE, "put_manifest.lua")], env=env)
            note_cpu("put", s, c0)
            record("put", s.name, w["rps"], "req/s")
            put_requests[(rep, s.name)] = w["requests"]
            log(f"  rep {rep + 1} {s.name:16} PUT  {w['rps']:9.1f} req/s  p50 {w['p50']:6.2f} ms  p99 {w['p99']:7.2f} ms"
                f"  non-2xx {w['non2xx']}  {w['sockerr']}  ({w['requests']} responses)")
            if w["non2xx"]:
                log(f"  WARNING: {s.name} answered {w['non2xx']} PUTs with non-2xx")

    def list_paginated(s, repo="bench/tags"):
        c = s.conn()
        path = f"/v2/{repo}/tags/list?n={PAGE}"
        got, nreq, saw_link = [], 0, False
        t0 = time.perf_counter()
        while path:
            st, h, body = s.req("GET", path, None, None, conn=c)
            nreq += 1
            if st != 200:
                raise RuntimeError(f"{s.name}: {path} -> {st} {body[:200]!r}")
            page = json.loads(body).get("tags") or []
            got += page
            link = h.get("Link")
            if link:
                m = re.search(r"<([^>]+)>", link)
                path = urllib.parse.urljoin("/", m.group(1)) if m else None
                saw_link = True
            elif not saw_link and len(page) == PAGE and nreq < NTAGS:  # registry sends no Link: use last=
                path = f"/v2/{repo}/tags/list?n={PAGE}&last={urllib.parse.quote(page[-1])}"
            else:
                path = None
        dt = time.perf_counter() - t0
        c.close()
        return dt, nreq, got

    # (c) check: the PUTs that wrk counted really created tags (wrk counts completed responses;
    # requests in flight when it stops may land too, so a few more tags than responses is normal)
    for s in servers:
        _, _, got = list_paginated(s, "bench/put")
        for rep in range(REPS_C):
            made = sum(1 for t in got if t.startswith(f"put-r{rep}-"))
            want = put_requests[(rep, s.name)]
            ok = want <= made <= want + WRK_CONNS * WRK_THREADS + 2
            log(f"  check: {s.name:16} rep {rep + 1}: {made} tags in bench/put for {want} PUT responses"
                + ("" if ok else "  <-- MISMATCH"))

    mon.set("d")
    # (d) tags listing
    log(f"\n== (d) list a repository with {NTAGS} tags: paginated n={PAGE} (following Link / last=) "
        f"and in one request; {REPS_D} reps")
    tags = [f"v{i:05d}" for i in range(NTAGS)]
    for s in servers:
        prep_repo(s, "bench/tags")
        t0 = time.perf_counter()
        chunks = [tags[i::4] for i in range(4)]

        def put_tags(ts, s=s):
            c = s.conn()
            for t in ts:
                st, _, body = s.req("PUT", f"/v2/bench/tags/manifests/{t}", manifest,
                                    {"Content-Type": OCI_MANIFEST}, conn=c)
                if st != 201:
                    raise RuntimeError(f"{s.name}: PUT tag {t} -> {st} {body[:200]!r}")
            c.close()
        parallel(put_tags, [(c,) for c in chunks])
        dt = time.perf_counter() - t0
        log(f"  setup: {s.name:16} {NTAGS} tags PUT in {dt:.1f}s ({NTAGS / dt:.0f}/s, 4 Python keep-alive clients)")

    def touch(s, t):
        st, _, body = s.req("PUT", f"/v2/bench/man/manifests/{t}", manifest, {"Content-Type": OCI_MANIFEST})
        if st != 201:
            die(f"{s.name}: manifest PUT {t} -> {st} {body[:300]!r}")

    def list_one(s, q):
        c = s.conn()
        t0 = time.perf_counter()
        st, h, body = s.req("GET", f"/v2/bench/tags/tags/list{q}", None, None, conn=c)
        dt = time.perf_counter() - t0
        c.close()
        tags_ = json.loads(body).get("tags") or [] if st == 200 else []
        return dt, st, tags_, bool(h.get("Link"))

    single_q = {}
    for s in servers:  # which single request returns everything?
        for q in ("", f"?n={NTAGS}"):
            _, st, t_, link = list_one(s, q)
            if st == 200 and len(t_) == NTAGS and not link:
                single_q[s.name] = q
                break
        else:
            log(f"  {s.name}: no single request returned all {NTAGS} tags "
                f"(no n: {st}, {len(t_)} tags, Link={link})")
        log(f"  {s.name:16} one-request form: /tags/list{single_q.get(s.name, ' (none)')}")
    for rep in range(REPS_D):
        for s in order(servers, rep):
            dt, nreq, got = list_paginated(s)
            ok = sorted(got) == tags
            record("list_paged", s.name, 1 / dt if ok else float("nan"), "lists/s")
            record("list_paged_ms", s.name, dt * 1000, "ms")
            msg = f"  rep {rep + 1} {s.name:16} paginated {dt * 1000:8.1f} ms in {nreq} requests ({len(got)} tags{'' if ok else ' WRONG'})"
            if s.name in single_q:
                dt1, st, t_, _ = list_one(s, single_q[s.name])
                ok1 = sorted(t_) == tags
                record("list_one", s.name, 1 / dt1 if ok1 else float("nan"), "lists/s")
                record("list_one_ms", s.name, dt1 * 1000, "ms")
                msg += f";  one request {dt1 * 1000:8.1f} ms ({len(t_)} tags{'' if ok1 else ' WRONG'})"
            if len(got) > PAGE and nreq == 1:
                msg += f"  [ignored n={PAGE}: one page held all]"
            log(msg)
            # Right after a write elsewhere (a manifest PUT into another repository): a busy
            # registry. It empties bonded's since-the-last-commit caches; the page kept with this
            # repository's tag generation still stands, after one look-up of that generation.
            touch(s, f"touch-{rep}-a")
            dt, nreq, got = list_paginated(s)
            ok = sorted(got) == tags
            record("list_paged_cold", s.name, 1 / dt if ok else float("nan"), "lists/s")
            msg = f"  rep {rep + 1} {s.name:16} after a write elsewhere: paginated {dt * 1000:8.1f} ms ({len(got)} tags{'' if ok else ' WRONG'})"
            if s.name in single_q:
                touch(s, f"touch-{rep}-b")
                dt1, st, t_, _ = list_one(s, single_q[s.name])
                ok1 = sorted(t_) == tags
                record("list_one_cold", s.name, 1 / dt1 if ok1 else float("nan"), "lists/s")
                msg += f";  one request {dt1 * 1000:8.1f} ms ({len(t_)} tags{'' if ok1 else ' WRONG'})"
            log(msg)
            if not ok:
                log(f"  WARNING: {s.name} paginated listing returned {len(got)} tags, {len(set(got))} distinct")

    # Right after a new tag in the listed repository: nothing cached can answer, on either
    # registry. Done after the reps above, which check for exactly the first NTAGS tags. Only the
    # paginated form: past 10,000 tags bonded's one request is a first page.
    added = {s.name: [] for s in servers}
    for rep in range(REPS_D):
        for s in order(servers, rep):
            t = f"w{rep:05d}"
            st, _, body = s.req("PUT", f"/v2/bench/tags/manifests/{t}", manifest,
                                {"Content-Type": OCI_MANIFEST})
            if st != 201:
                die(f"{s.name}: manifest PUT {t} -> {st} {body[:300]!r}")
            added[s.name].append(t)
            dt, nreq, got = list_paginated(s)
            ok = sorted(got) == tags + added[s.name]
            record("list_paged_new", s.name, 1 / dt if ok else float("nan"), "lists/s")
            log(f"  rep {rep + 1} {s.name:16} after a new tag here: paginated {dt * 1000:8.1f} ms"
                f" in {nreq} requests ({len(got)} tags{'' if ok else ' WRONG'})")

    mon.set("summary")
    # ---- summary
    log("\n== resources")
    mon.report()
    for s in servers:
        log(f"  {s.name:16} peak RSS {fmt(peak_rss_mib(s.pid))} MiB; total CPU {fmt(cpu_secs(s.pid), 1)} s")
    log("  server CPU seconds per trial (median):")
    for key in ("push_1g", "pull_1g", "push_conc", "pull_conc", "get", "put"):
        log(f"    {key:10} " + "   ".join(f"{n} {fmt(median(cpu.get((key, n), [])), 2)} s" for n in names))

    rows = [
        ("(a) push 1 GiB, single stream", "push_1g", "MB/s", ceil["push_1g"]),
        ("(a) pull 1 GiB, single stream", "pull_1g", "MB/s", ceil["pull_1g"]),
        (f"(b) push {CONC}x{SMALL_MIB} MiB concurrent", "push_conc", "MB/s", ceil["push_conc"]),
        (f"(b) pull {CONC}x{SMALL_MIB} MiB concurrent", "pull_conc", "MB/s", ceil["pull_conc"]),
        (f"(c) manifest GET by tag, {WRK_CONNS} conns", "get", "req/s", ceil["get"]),
        (f"(c) manifest PUT new tag, {WRK_CONNS} conns", "put", "req/s", None),
        (f"(d) list {NTAGS} tags, n={PAGE} pages", "list_paged", "lists/s", None),
        (f"(d) list {NTAGS} tags, one request", "list_one", "lists/s", None),
        (f"(d) ... n={PAGE} pages, after a write elsewhere", "list_paged_cold", "lists/s", None),
        (f"(d) ... one request, after a write elsewhere", "list_one_cold", "lists/s", None),
        (f"(d) ... n={PAGE} pages, after a new tag here", "list_paged_new", "lists/s", None),
    ]
    med = {(k, n): median(results.get((k, n), [])) for _, k, _, _ in rows for n in names}
    for k in ("push_1g_durable", "list_paged_ms", "list_one_ms"):
        for n in names:
            med[(k, n)] = median(results.get((k, n), []))
    log("\n== results (median of reps; higher is better)")
    hdr = f"{'workload':40} {'unit':8} " + " ".join(f"{n:>16}" for n in names)
    if len(names) == 2:
        hdr += f" {'bonded/dr':>10} {'ceiling':>12}"
    log(hdr)
    for label, k, unit, c in rows:
        line = f"{label:40} {unit:8} " + " ".join(f"{fmt(med[(k, n)]):>16}" for n in names)
        if len(names) == 2:
            b, d = med[(k, "bonded")], med[(k, "docker-registry")]
            line += f" {fmt(b / d if d else float('nan'), 2) + 'x':>10}"
            line += f" {fmt(c) if c else '-':>12}"
        log(line)
    for n in names:
        log(f"  {n}: (a) push incl. a sync afterwards {fmt(med[('push_1g_durable', n)])} MB/s;"
            f" (d) paginated {fmt(med[('list_paged_ms', n)])} ms, one request {fmt(med[('list_one_ms', n)])} ms")

    if "bonded" in names:
        log("\n== targets")

        def line(ok, text):
            log(f"{'PASS' if ok else 'FAIL'}  {text}")
        b = lambda k: med[(k, "bonded")]  # noqa: E731
        line(b("push_1g") >= 0.8 * push_ceiling,
             f"push  (a) {fmt(b('push_1g'))} MB/s >= 0.8 x push ceiling {fmt(push_ceiling)} = {fmt(0.8 * push_ceiling)} MB/s")
        line(b("pull_1g") >= 0.8 * ceil["pull_1g"],
             f"pull  (a) {fmt(b('pull_1g'))} MB/s >= 0.8 x sendfile {fmt(ceil['pull_1g'])} = {fmt(0.8 * ceil['pull_1g'])} MB/s")
        line(b("get") >= 0.5 * ceil["get"],
             f"GET   (c) {fmt(b('get'))} req/s >= 0.5 x nginx {fmt(ceil['get'])} = {fmt(0.5 * ceil['get'])} req/s")
        if "docker-registry" in names:
            for label, k, unit, c in rows:
                bv, dv = med[(k, "bonded")], med[(k, "docker-registry")]
                need = 2 * dv
                if c and need > c:
                    line(bv >= 0.8 * c, f"2x    {label}: 2 x docker-registry {fmt(dv)} = {fmt(need)} {unit} exceeds the "
                         f"ceiling {fmt(c)}; ceiling-bound, judged as >= 0.8 x ceiling = {fmt(0.8 * c)}: bonded {fmt(bv)}")
                else:
                    line(bv >= need, f"2x    {label}: bonded {fmt(bv)} >= 2 x docker-registry {fmt(dv)} = {fmt(need)} {unit}")
    log(f"\ntotal time {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
