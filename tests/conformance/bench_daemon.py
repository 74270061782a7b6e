#!/usr/bin/env python3
"""End-to-end benchmark through the REAL Dify plugin daemon (issue #20 §2): our plugin and the Python-SDK
twin (bench/python-sdk-plugin), both installed as packages in the same daemon, webhooks sent through the
daemon's own routes with plugin storage live. Run by `bash tests/conformance/bench.sh`, which sets up, packages,
starts the services on ports of its own and stops them again; this script starts nothing itself.

What one "pair" is (for every target, timed from the first byte sent to the last byte read, client side):
  POST /plugin/<tenant>/dispatch/trigger/dispatch_event   a signed OpenAI `batch.completed` delivery with a fresh
                                                           webhook-id (SSE answer: events + payload)
  POST /plugin/<tenant>/dispatch/trigger/invoke_event     event batch_completed with the payload dispatch returned
exactly the two calls Dify's API makes for one webhook, the same routes tests/conformance/test_openai_trigger.py
checks. Every answer is checked (events == [batch_completed, any_event], invoke not cancelled, variables carry the
event id); a wrong answer is an error, not a latency.

Targets, interleaved at each concurrency (round r runs each target once, the order rotated every round):
  ours     hookwright/openai_trigger, the Marketplace package (the daemon installs our wheel from the loopback
           index, `python -m main` then runs our binary over stdio); storage permission granted, so every
           delivery's webhook-id is stored through the daemon (dedupe), a storage round trip per dispatch
  python   bench/openai_bench, the same job on the official Python SDK (dify_plugin 0.7.4, standardwebhooks)
  noop     the daemon's own cost: the same two routes into a plugin that does no work, a remote-debugging stub
           in this process (tests/conformance/smoke_register.py's declaration) that answers each request at once
  http     the daemon's HTTP floor: two GET /health/check (no plugin, no Redis)
Also recorded per target and level: CPU time of the daemon process and of the plugin process, per pair
(/proc/<pid>/stat utime+stime, children included), so the daemon's share does not rest on latency alone.

Writes target/bench/daemon.json (figures, machine: nproc, CPU model, RAM, kernel; date) and prints the table.
Exit status non-zero when any pair failed or the daemon logged a storage error.

Usage: python3 bench_daemon.py [--pairs 300] [--levels 1,8,64] [--rounds 6] [--warmup 60]
Env: OT_PACKAGE (our .difypkg; default dist/openai_trigger-*.difypkg, the Marketplace one),
     OT_BENCH_STORAGE=refused (our manifest's storage permission turned off: dedupe in process memory),
     OT_BENCH_OUT (default target/bench/daemon.json).
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import socket
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import smoke_register  # noqa: E402
from dify_daemon import (  # noqa: E402
    Daemon, RemotePlugin, SSEResult, build_difypkg, load_env, raw_http_request_hex, raw_http_response_hex,
)

PROVIDER = "openai_trigger"  # both plugins' provider name (the twin uses the same on purpose)
OURS_ID = "hookwright/openai_trigger"
PYTHON_ID = "bench/openai_bench"
PYTHON_DIR = os.path.join(ROOT, "bench", "python-sdk-plugin")
PYTHON_SKIP = {"setup.sh", "check.py", "README.md"}
EVENT = "batch_completed"
ANY = "any_event"
TARGETS = ["ours", "python", "noop", "http"]
LABELS = {
    "ours": "ours (Rust, package)" if os.environ.get("OT_BENCH_STORAGE") != "refused" else "ours, storage refused",
    "python": "Python SDK (package)",
    "noop": "daemon + no-op plugin",
    "http": "daemon HTTP floor",
}


def say(msg: str) -> None:
    print(msg, flush=True)


# ============================================================================================ deliveries


def new_secret() -> tuple[str, bytes]:
    key = os.urandom(32)
    return "whsec_" + base64.b64encode(key).decode(), key


def signed_delivery(key: bytes, n: int) -> tuple[str, str, str]:
    """(raw_http_request hex, webhook-id, event id) of an OpenAI-shaped batch.completed delivery."""
    now = int(time.time())
    event_id = f"evt_{uuid.uuid4().hex}"
    event = {
        "id": event_id, "object": "event", "created_at": now, "type": "batch.completed",
        "data": {"id": f"batch_{n:06d}{uuid.uuid4().hex[:12]}"},
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    wid, ts = f"msg_{uuid.uuid4().hex}", str(now)
    mac = hmac.new(key, wid.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256)
    headers = [
        ("Host", "dify.example"),
        ("User-Agent", "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Webhook-Id", wid),
        ("Webhook-Timestamp", ts),
        ("Webhook-Signature", "v1," + base64.b64encode(mac.digest()).decode()),
    ]
    return raw_http_request_hex("POST", "/triggers/plugin/bench", headers, body), wid, event_id


# ============================================================================================ HTTP client


class Conn:
    """One keep-alive connection to the daemon per worker (what Dify's API pool does), reopened on error."""

    def __init__(self, env: dict):
        self.host, self.port = env["DIFY_DAEMON_HTTP_HOST"], int(env["DIFY_DAEMON_HTTP_PORT"])
        self.key, self.tenant = env["DIFY_DAEMON_SERVER_KEY"], env["DIFY_DAEMON_TENANT_ID"]
        self.c = None

    def call(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.c.request(method, path, body=body, headers=headers)
                r = self.c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def dispatch(self, plugin_id: str, suffix: str, data: dict) -> SSEResult:
        body = json.dumps({"user_id": "", "data": data}, separators=(",", ":")).encode()
        st, raw = self.call("POST", f"/plugin/{self.tenant}/dispatch/trigger/{suffix}", body,
                            {"X-Api-Key": self.key, "X-Plugin-ID": plugin_id, "Content-Type": "application/json"})
        return SSEResult(st, {}, raw)

    def close(self):
        if self.c is not None:
            self.c.close()


def chunk(sse: SSEResult):
    if sse.status == 200 and len(sse.events) == 1 and sse.events[0].get("code") == 0:
        return sse.events[0].get("data")
    return None


class Target:
    """How one pair is sent to one target, and how its answer is checked."""

    def __init__(self, name: str, plugin_id: str | None, event: str, sub: dict | None, key: bytes | None):
        self.name, self.plugin_id, self.event, self.sub, self.key = name, plugin_id, event, sub, key

    def prepare(self, n: int) -> list:
        if self.name == "http":
            return [None] * n
        out = []
        for i in range(n):
            raw, wid, eid = signed_delivery(self.key or b"noop", i)
            out.append((raw, eid))
        return out

    def pair(self, conn: Conn, item) -> str | None:
        """Runs one pair; None when every answer was right, else what was wrong."""
        if self.name == "http":
            for _ in range(2):
                st, raw = conn.call("GET", "/health/check", None, {})
                if st != 200:
                    return f"health/check HTTP {st} {raw[:200]!r}"
            return None
        raw, eid = item
        base = {"provider": PROVIDER if self.name != "noop" else smoke_register.PROVIDER,
                "subscription": self.sub, "raw_http_request": raw, "credentials": {},
                "credential_type": "unauthorized"}
        d = chunk(conn.dispatch(self.plugin_id, "dispatch_event", base))
        if not d:
            return f"dispatch: no success chunk"
        want = [self.event] if self.name == "noop" else [EVENT, ANY]
        if d.get("events") != want:
            return f"dispatch events {d.get('events')} != {want}"
        inv = chunk(conn.dispatch(self.plugin_id, "invoke_event",
                                  dict(base, event=self.event, parameters={}, payload=d.get("payload"))))
        if not inv or inv.get("cancelled") is not False:
            return f"invoke: {inv}"
        if self.name != "noop" and (inv.get("variables") or {}).get("id") != eid:
            return f"invoke variables id {(inv.get('variables') or {}).get('id')} != {eid}"
        return None


# ============================================================================================ no-op plugin


class NoopPlugin:
    """A remote-debugging plugin (smoke_register.py's declaration) that answers every request at once."""

    def __init__(self, env: dict, daemon: Daemon):
        self.plugin = RemotePlugin(env, daemon.debugging_key())
        # replies are small writes: without TCP_NODELAY, Nagle + the daemon's delayed ACK add ~40 ms per answer
        self.plugin.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ack = raw_http_response_hex(200, "OK", [("Content-Type", "application/json"), ("Content-Length", "15")],
                                    b'{"status":"ok"}')
        self.dispatch_answer = {"user_id": "", "events": ["ping"], "response": ack, "payload": {"k": "v"}}
        self.invoke_answer = {"variables": {"id": "x"}, "cancelled": False}
        self.plugin.register(smoke_register.manifest(), "trigger_declaration",
                             [smoke_register.trigger_provider()], {"icon.svg": smoke_register.ICON})
        self.plugin.start_heartbeats(interval=10)
        line = self.plugin.read_line(timeout=2.5)
        if line is not None:
            raise RuntimeError(f"no-op plugin registration rejected: {line!r}")
        daemon.wait_installed(smoke_register.PLUGIN_ID, timeout=15)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                line = self.plugin.read_line(timeout=None)
            except OSError:  # closed by close() at the end of the run
                return
            if not line:
                return
            try:
                req = json.loads(line)
            except ValueError:
                continue
            if req.get("event") != "request":
                continue
            action = (req.get("data") or {}).get("action")
            answer = self.dispatch_answer if action == "dispatch_trigger_event" else self.invoke_answer
            sid = req["session_id"]
            # RemotePlugin.reply's two messages (stream, end) in one write
            self.plugin.send_raw(b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in (
                {"event": "session", "session_id": sid, "data": {"type": "stream", "data": answer}},
                {"event": "session", "session_id": sid, "data": {"type": "end", "data": {}}})))

    def close(self):
        self.plugin.close()


# ============================================================================================ installation


def python_package() -> bytes:
    files = {}
    for dirpath, dirnames, filenames in os.walk(PYTHON_DIR):
        dirnames[:] = [d for d in dirnames if d not in (".venv", "__pycache__") and not d.startswith(".")]
        for f in filenames:
            rel = os.path.relpath(os.path.join(dirpath, f), PYTHON_DIR)
            if rel in PYTHON_SKIP or f.endswith(".pyc") or f.startswith("."):
                continue
            with open(os.path.join(dirpath, f), "rb") as fh:
                files[rel] = fh.read()
    return build_difypkg(files)


def our_package() -> str:
    if os.environ.get("OT_PACKAGE"):
        return os.environ["OT_PACKAGE"]
    found = [p for p in glob.glob(os.path.join(ROOT, "dist", "openai_trigger-*.difypkg"))
             if not p.endswith(".signed.difypkg") and not p.endswith("-offline.difypkg")]
    if not found:
        raise RuntimeError("no dist/openai_trigger-*.difypkg (cargo xtask release --example-publisher builds it)")
    return sorted(found)[-1]


def without_storage(pkg: bytes) -> bytes:
    """Our package with `storage: enabled: false` in its manifest (the daemon then refuses storage calls)."""
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(pkg)) as z:
        files = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    text = files["manifest.yaml"].decode()
    changed = re.sub(r"(\n    storage:\n      enabled: )true", r"\1false", text)
    if changed == text:
        raise RuntimeError("manifest.yaml: no `storage: enabled: true` to turn off")
    files["manifest.yaml"] = changed.encode()
    return build_difypkg(files)


def install(d: Daemon, plugin_id: str, pkg: bytes, filename: str) -> dict:
    for item in d.installations():
        if item.get("plugin_id") == plugin_id:
            d.uninstall(item["id"])
    t0 = time.time()
    st, body = d.upload_package(pkg, filename=filename, verify_signature=False)
    if st != 200 or body.get("code") != 0:
        raise RuntimeError(f"upload {filename}: HTTP {st} {json.dumps(body)[:600]}")
    uid = body["data"]["unique_identifier"]
    st, body = d.install_identifiers([uid])
    if st != 200 or body.get("code") != 0:
        raise RuntimeError(f"install {uid}: HTTP {st} {body}")
    if not body["data"].get("all_installed"):
        task = d.wait_task(body["data"]["task_id"], timeout=900)
        if task.get("status") != "success":
            msg = "; ".join(p.get("message", "") for p in task.get("plugins", []))
            raise RuntimeError(f"install task for {uid} failed: {msg}")
    inst = d.wait_installed(plugin_id, timeout=30)
    say(f"  installed {uid} ({time.time() - t0:.1f} s)")
    return inst


def wait_ready(conn: Conn, target: Target, timeout: float = 180) -> None:
    end, last = time.time() + timeout, None
    while time.time() < end:
        try:
            last = target.pair(conn, target.prepare(1)[0])
            if last is None:
                return
        except Exception as e:  # noqa: BLE001
            last = repr(e)
        time.sleep(1)
    raise RuntimeError(f"{target.name}: no correct pair within {timeout:.0f} s: {last}")


def runtime_pid(log_path: str, plugin_id: str) -> int | None:
    """The pid of the local runtime the daemon launched for plugin_id (its 'local runtime instance ready' line)."""
    try:
        text = open(log_path, encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    ident = re.compile(r"\bplugin=" + re.escape(plugin_id) + r":")
    pid = None
    for line in text.splitlines():
        if "local runtime instance ready" in line and ident.search(line):
            m = re.search(r"\bpid=(\d+)", line)
            pid = int(m.group(1)) if m else pid
    return pid if pid and os.path.exists(f"/proc/{pid}") else None


# ============================================================================================ measurement


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """utime+stime of pid and of its threads (and of its waited-for children)."""
    if not pid:
        return None
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command: state is fields[0]; utime=11 stime=12 cutime=13 cstime=14 (0-based here)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def run_block(env: dict, target: Target, n: int, concurrency: int, pids: dict) -> dict:
    items = target.prepare(n)
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_i = [0]

    def worker():
        conn = Conn(env)
        try:
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= n:
                    return
                t0 = time.perf_counter()
                try:
                    bad = target.pair(conn, items[i])
                except Exception as e:  # noqa: BLE001
                    bad = repr(e)
                dt = time.perf_counter() - t0
                with lock:
                    if bad is None:
                        lat.append(dt)
                    else:
                        errors.append(bad)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
    cpu = {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None for k in pids}
    return {"lat": lat, "errors": errors, "wall": wall, "cpu": cpu}


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def machine() -> dict:
    def first(path, key):
        try:
            for line in open(path):
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None

    mem_kib = first("/proc/meminfo", "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "ram_gib": round(int(mem_kib.split()[0]) / 1048576, 1) if mem_kib else None,
        "kernel": platform.release(),
        "python_client": platform.python_version(),
    }


# ============================================================================================ daemon profile


def profile_daemon(env: dict, targets: dict, seconds: float) -> dict:
    """With OT_BENCH_PPROF=1 (and the daemon started with OT_DAEMON_PPROF=true): for ours, the Python twin and the
    no-op plugin in turn, a Go CPU profile of the daemon (`/debug/pprof/profile`) over `seconds` while pairs run at
    64 concurrent, saved as target/bench/daemon-<target>.pprof, and its top functions (`go tool pprof -top`)."""
    import subprocess
    import urllib.request

    out_dir = os.path.join(ROOT, "target", "bench")
    os.makedirs(out_dir, exist_ok=True)
    host, port = env.get("DIFY_DAEMON_HTTP_HOST", "127.0.0.1"), env["DIFY_DAEMON_HTTP_PORT"]
    summary = {}
    for name in ("ours", "python", "noop"):
        path = os.path.join(out_dir, f"daemon-{name}.pprof")
        got: dict = {}

        def fetch():
            url = f"http://{host}:{port}/debug/pprof/profile?seconds={int(seconds)}"
            request = urllib.request.Request(url, headers={"X-Api-Key": env.get("DIFY_DAEMON_SERVER_KEY", "")})
            try:
                with urllib.request.urlopen(request, timeout=seconds + 30) as r:
                    got["data"] = r.read()
            except Exception as e:  # noqa: BLE001
                got["error"] = repr(e)

        t = threading.Thread(target=fetch)
        t.start()
        pairs = 0
        # Enough pairs to cover the profile's window: keep the load on until the profile is in.
        while t.is_alive():
            b = run_block(env, targets[name], 256, 64, {})
            pairs += len(b["lat"])
        t.join()
        if "data" not in got:
            say(f"  profile {name}: {got.get('error')}")
            continue
        with open(path, "wb") as f:
            f.write(got["data"])
        top = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=30", path], capture_output=True, text=True)
        summary[name] = {"file": path, "pairs": pairs, "top": top.stdout[-6000:]}
        say(f"==> daemon profile while serving {name} at 64 concurrent ({pairs} pairs): {path}")
        say(top.stdout[:4000])
    return summary


# ============================================================================================ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=300, help="pairs per target per concurrency level")
    ap.add_argument("--levels", default="1,8,64")
    ap.add_argument("--rounds", type=int, default=6, help="interleaving rounds per level (ABCD, BCDA, ...)")
    ap.add_argument("--warmup", type=int, default=60, help="warm-up pairs per target (at concurrency 8)")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]

    env = load_env()
    d = Daemon(env)
    log_path = env.get("DIFY_DAEMON_LOG", "")
    log_start = os.path.getsize(log_path) if log_path and os.path.exists(log_path) else 0

    say("==> installing both packages into the daemon (tenant " + env["DIFY_DAEMON_TENANT_ID"] + ")")
    ours_path = our_package()
    ours_pkg = open(ours_path, "rb").read()
    refused = os.environ.get("OT_BENCH_STORAGE") == "refused"
    if refused:
        ours_pkg = without_storage(ours_pkg)
        say("  OT_BENCH_STORAGE=refused: our manifest's storage permission removed (dedupe in process memory)")
    install(d, OURS_ID, ours_pkg, os.path.basename(ours_path))
    install(d, PYTHON_ID, python_package(), "openai_bench.difypkg")
    say("==> no-op plugin (remote debugging stub, answers at once)")
    noop = NoopPlugin(env, d)

    secret_text, key = new_secret()
    sub = {"endpoint": "https://dify.example/triggers/plugin/bench", "expires_at": -1, "parameters": {},
           "properties": {"webhook_secret": secret_text}}
    targets = {
        "ours": Target("ours", OURS_ID, EVENT, sub, key),
        "python": Target("python", PYTHON_ID, EVENT, sub, key),
        "noop": Target("noop", smoke_register.PLUGIN_ID, "ping", sub, None),
        "http": Target("http", None, "", None, None),
    }
    conn = Conn(env)
    for name in ("ours", "python", "noop"):
        wait_ready(conn, targets[name])
    conn.close()
    daemon_pid = int(env["DIFY_DAEMON_PID"]) if env.get("DIFY_DAEMON_PID") else None
    plugin_pids = {"ours": runtime_pid(log_path, OURS_ID), "python": runtime_pid(log_path, PYTHON_ID)}
    say(f"  daemon pid {daemon_pid}; plugin pids {plugin_pids}")

    say(f"==> warm-up: {args.warmup} pairs per target at concurrency 8")
    for name in TARGETS:
        w = run_block(env, targets[name], args.warmup, 8, {})
        if w["errors"]:
            say(f"  warm-up {name}: {len(w['errors'])} errors, first: {w['errors'][0]}")

    results: dict = {}
    for c in levels:
        per_round = max(1, args.pairs // args.rounds)
        say(f"==> concurrency {c}: {args.rounds} rounds x {per_round} pairs per target, interleaved")
        acc = {n: {"lat": [], "errors": [], "wall": 0.0, "cpu_daemon": 0.0, "cpu_plugin": 0.0} for n in TARGETS}
        for r in range(args.rounds):
            order = TARGETS[r % len(TARGETS):] + TARGETS[: r % len(TARGETS)]
            for name in order:
                pids = {"daemon": daemon_pid}
                if name in plugin_pids:
                    pids["plugin"] = plugin_pids[name]
                b = run_block(env, targets[name], per_round, c, pids)
                a = acc[name]
                a["lat"] += b["lat"]
                a["errors"] += b["errors"]
                a["wall"] += b["wall"]
                if b["cpu"].get("daemon") is not None:
                    a["cpu_daemon"] += b["cpu"]["daemon"]
                if b["cpu"].get("plugin") is not None:
                    a["cpu_plugin"] += b["cpu"]["plugin"]
        results[c] = {}
        for name in TARGETS:
            a = acc[name]
            lat = sorted(a["lat"])
            ok = len(lat)
            results[c][name] = {
                "pairs": ok,
                "errors": len(a["errors"]),
                "first_error": a["errors"][0] if a["errors"] else None,
                "p50_ms": round(percentile(lat, 50) * 1000, 3),
                "p99_ms": round(percentile(lat, 99) * 1000, 3),
                "pairs_per_s": round(ok / a["wall"], 1) if a["wall"] else None,
                "daemon_cpu_ms_per_pair": round(a["cpu_daemon"] * 1000 / ok, 3) if ok else None,
                "plugin_cpu_ms_per_pair": (round(a["cpu_plugin"] * 1000 / ok, 3)
                                           if ok and plugin_pids.get(name) else None),
            }
            f = results[c][name]
            say(f"  {name:<7} p50 {f['p50_ms']:8.2f} ms  p99 {f['p99_ms']:8.2f} ms  {f['pairs_per_s']:8.1f} pairs/s"
                f"  errors {f['errors']}" + (f" ({f['first_error']})" if f["errors"] else ""))

    profiles = {}
    if os.environ.get("OT_BENCH_PPROF"):
        profiles = profile_daemon(env, targets, float(os.environ.get("OT_BENCH_PPROF_SECONDS", "8")))

    # Storage was live: the same webhook-id again is a duplicate for ours (its dedupe goes through the daemon's
    # storage), and the daemon logged no storage error during the run.
    raw, wid, _ = signed_delivery(key, 0)
    conn = Conn(env)
    base = {"provider": PROVIDER, "subscription": sub, "raw_http_request": raw, "credentials": {},
            "credential_type": "unauthorized"}
    first = chunk(conn.dispatch(OURS_ID, "dispatch_event", base))
    again = chunk(conn.dispatch(OURS_ID, "dispatch_event", base))
    conn.close()
    dedupe_ok = refused or bool(first and first.get("events") and again and again.get("events") == []
                     and bytes.fromhex(again.get("response", "")).endswith(b'{"status":"duplicate"}'))
    log_tail = ""
    if log_path and os.path.exists(log_path):
        with open(log_path, "rb") as f:
            f.seek(log_start)
            log_tail = f.read().decode("utf-8", "replace")
    storage_errors = [l for l in log_tail.splitlines()
                      if re.search(r"storage", l, re.I) and re.search(r"\b(ERROR|WARN|error|failed)\b", l)]
    noop.close()
    if refused:
        storage_errors = []  # with the permission off, "storage unusable" is the expected state, not an error

    # ---------------------------------------------------------------- report
    mach = machine()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = []
    lines.append(f"Through the real Dify plugin daemon ({env.get('DIFY_DAEMON_COMMIT', '?')[:8]}), PostgreSQL + Redis,"
                 f" plugin storage live; {args.pairs} pairs per target per level, {args.rounds} interleaved rounds.")
    lines.append(f"Machine: {mach['nproc']} CPUs ({mach['cpu_model']}), {mach['ram_gib']} GiB RAM, Linux "
                 f"{mach['kernel']}; {date}. A pair = dispatch_event + invoke_event (client-side, keep-alive).")
    lines.append("")
    lines.append("| concurrency | target | p50 ms | p99 ms | pairs/s | daemon CPU ms/pair | plugin CPU ms/pair |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|")
    for c in levels:
        for name in TARGETS:
            f = results[c][name]
            pc = "-" if f["plugin_cpu_ms_per_pair"] is None else f"{f['plugin_cpu_ms_per_pair']:.2f}"
            dc = "-" if f["daemon_cpu_ms_per_pair"] is None else f"{f['daemon_cpu_ms_per_pair']:.2f}"
            lines.append(f"| {c} | {LABELS[name]} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['pairs_per_s']:.1f} "
                         f"| {dc} | {pc} |")
    lines.append("")
    verdicts = []
    for c in levels:
        o, p, n = results[c]["ours"], results[c]["python"], results[c]["noop"]
        verdicts.append({
            "concurrency": c,
            "p50_python_over_ours": round(p["p50_ms"] / o["p50_ms"], 2) if o["p50_ms"] else None,
            "p99_python_over_ours": round(p["p99_ms"] / o["p99_ms"], 2) if o["p99_ms"] else None,
            "throughput_ours_over_python": round(o["pairs_per_s"] / p["pairs_per_s"], 2) if p["pairs_per_s"] else None,
            "ours_never_slower": o["p50_ms"] <= p["p50_ms"] and o["p99_ms"] <= p["p99_ms"]
            and o["pairs_per_s"] >= p["pairs_per_s"],
            "daemon_share_of_ours_p50": round(n["p50_ms"] / o["p50_ms"], 2) if o["p50_ms"] else None,
        })
    for v in verdicts:
        lines.append(f"concurrency {v['concurrency']}: Python/ours p50 x{v['p50_python_over_ours']}, p99 "
                     f"x{v['p99_python_over_ours']}; ours/Python throughput x{v['throughput_ours_over_python']}; "
                     f"ours never slower: {v['ours_never_slower']}; no-op plugin p50 = "
                     f"{100 * (v['daemon_share_of_ours_p50'] or 0):.0f}% of ours")
    lines.append(f"storage live: duplicate webhook-id answered 'duplicate' through daemon storage: {dedupe_ok}; "
                 f"storage errors in the daemon log during the run: {len(storage_errors)}")
    say("")
    say("\n".join(lines))

    out = os.environ.get("OT_BENCH_OUT") or os.path.join(ROOT, "target", "bench", "daemon.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    doc = {
        "date": date,
        "machine": mach,
        "daemon_commit": env.get("DIFY_DAEMON_COMMIT"),
        "package": os.path.basename(ours_path),
        "our_storage": "refused" if refused else "granted",
        "pairs_per_level": args.pairs,
        "daemon_profiles": profiles,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "levels": levels,
        "method": {
            "pair": "POST dispatch/trigger/dispatch_event (signed batch.completed, fresh webhook-id) then POST "
                    "dispatch/trigger/invoke_event with the returned payload; client-side wall time; one keep-alive "
                    "connection per worker; every answer checked",
            "noop": "same two routes into a remote-debugging stub plugin that answers at once (the daemon's own cost "
                    "for a pair, plus the stub's and the client's)",
            "http": "two GET /health/check per pair (the daemon's HTTP floor)",
            "cpu": "utime+stime of the daemon process and of the plugin's process over each block, divided by pairs",
        },
        "results": {str(c): results[c] for c in levels},
        "verdicts": verdicts,
        "dedupe_through_storage": dedupe_ok,
        "storage_errors": storage_errors[:20],
        "table": "\n".join(lines),
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
    say(f"wrote {out}")
    bad = sum(results[c][n]["errors"] for c in levels for n in TARGETS)
    if bad or storage_errors or not dedupe_ok:
        say(f"FAILED: {bad} failed pairs, {len(storage_errors)} storage errors, dedupe through storage {dedupe_ok}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
