#!/usr/bin/env python3
"""Throw-away driver (stdlib only) that proves the Python-SDK benchmark plugin works.

Spawns `.venv/bin/python -m main` the way the Dify plugin daemon does (INSTALL_METHOD=local, cwd =
this folder, stdin/stdout/stderr pipes), waits for the first heartbeat, then plays the daemon:
signed batch.completed dispatch -> invoke with the returned payload -> bad-signature dispatch, plus a
few extra cases. Prints "N passed, M failed" and exits non-zero on failure. Then measures, roughly:
spawn -> first heartbeat, sequential dispatch round trips, dispatch+invoke pairs, and VmHWM.

Usage: python3 check.py [--rounds 200] [--body-bytes 1024] [--no-bench]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, ".venv", "bin", "python")
PROVIDER = "openai_trigger"
ENDPOINT = "https://dify.example.com/triggers/plugin/3f8e2c1a-7b4d-4e9f-a2c6-5d1b0e7f9a84"
SECRET = "whsec_" + base64.b64encode(b"openai-trigger-spec-example-key!").decode()
WRONG_SECRET = "whsec_" + base64.b64encode(b"some-other-32-byte-signing-key!!").decode()
TIMEOUT = 30.0


# ----------------------------------------------------------------------------------------------
# plugin process

class Plugin:
    def __init__(self) -> None:
        env = dict(os.environ, INSTALL_METHOD="local")
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(
            [PY, "-m", "main"], cwd=HERE, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.heartbeats = 0
        self.non_json_lines = 0
        self.other_lines: list[dict] = []
        self.stderr_chunks: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read(65536), b""):
            self.stderr_chunks.append(chunk)

    def read_line(self, deadline: float) -> bytes | None:
        """One stdout line (without \\n); None on EOF. Raises TimeoutError."""
        while b"\n" not in self.buf:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError("no output from plugin")
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def next_message(self, deadline: float) -> dict:
        """Next JSON object on stdout that has an "event" key; counts heartbeats on the way."""
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise EOFError("plugin closed stdout; stderr tail: " + self.stderr_tail())
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                self.non_json_lines += 1
                continue
            if not isinstance(msg, dict) or "event" not in msg:
                self.other_lines.append(msg)          # e.g. the manifest the SDK prints first
                continue
            return msg

    def wait_heartbeat(self) -> float:
        deadline = time.perf_counter() + 120
        while True:
            msg = self.next_message(deadline)
            if msg["event"] == "heartbeat":
                self.heartbeats += 1
                return time.perf_counter() - self.t_spawn
            self.other_lines.append(msg)

    def send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def call(self, data: dict) -> list[dict]:
        """Send one request; return the session's messages ({"type","data"}) up to and including end."""
        sid = str(uuid.uuid4())
        self.send({"session_id": sid, "conversation_id": None, "message_id": None, "app_id": None,
                   "endpoint_id": None, "context": None, "event": "request", "data": data})
        out: list[dict] = []
        deadline = time.perf_counter() + TIMEOUT
        while True:
            msg = self.next_message(deadline)
            if msg["event"] == "heartbeat":
                self.heartbeats += 1
                continue
            if msg["event"] != "session" or msg.get("session_id") != sid:
                self.other_lines.append(msg)
                continue
            out.append(msg["data"])
            if msg["data"].get("type") == "end":
                return out

    def vm_status(self) -> dict[str, str]:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                return {k: v.strip() for k, v in (ln.split(":", 1) for ln in f if ":" in ln)}
        except OSError:
            return {}

    def stderr_tail(self) -> str:
        return b"".join(self.stderr_chunks)[-1024:].decode("utf-8", "replace")

    def close(self) -> str:
        """Close stdin, see whether the SDK exits by itself, then kill our own child by PID."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout=3)
            return f"exited by itself with rc={rc} within 3 s of stdin EOF"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "did NOT exit within 3 s of stdin EOF (killed, like the daemon does)"


# ----------------------------------------------------------------------------------------------
# requests

def sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def event_body(event_type: str, body_bytes: int = 0) -> tuple[dict, bytes]:
    ev = {"object": "event", "id": "evt_" + uuid.uuid4().hex, "type": event_type, "created_at": int(time.time()) - 10,
          "data": {"id": "batch_" + uuid.uuid4().hex[:24]}}
    body = json.dumps(ev, separators=(",", ":")).encode()
    if len(body) < body_bytes:  # pad inside data to reach the requested body size
        ev["data"]["padding"] = ""
        pad = body_bytes - len(json.dumps(ev, separators=(",", ":")).encode())
        ev["data"]["padding"] = "x" * max(pad, 0)
        body = json.dumps(ev, separators=(",", ":")).encode()
    return ev, body


def raw_request(body: bytes, *, secret: str = SECRET, ts: int | None = None, sig: str | None = None) -> tuple[str, str]:
    msg_id = "wh_" + uuid.uuid4().hex
    ts = int(time.time()) if ts is None else ts
    sig = sign(secret, msg_id, ts, body) if sig is None else sig
    head = (
        "POST /triggers/plugin/3f8e2c1a-7b4d-4e9f-a2c6-5d1b0e7f9a84 HTTP/1.1\r\n"
        "Host: dify.example.com\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "User-Agent: OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)\r\n"
        f"Webhook-Id: {msg_id}\r\n"
        f"Webhook-Timestamp: {ts}\r\n"
        f"Webhook-Signature: {sig}\r\n"
        "X-Forwarded-For: 203.0.113.7\r\n"
        "X-Forwarded-Proto: https\r\n"
        "\r\n"
    ).encode()
    return binascii.hexlify(head + body).decode(), msg_id


def subscription(secret: str = SECRET) -> dict:
    return {"endpoint": ENDPOINT, "expires_at": -1, "parameters": {}, "properties": {"webhook_secret": secret}}


def dispatch_data(raw_hex: str, secret: str = SECRET) -> dict:
    # keys in the order Go would marshal them (sorted); the order does not matter to the SDK
    return {"action": "dispatch_trigger_event", "credential_type": "unauthorized", "credentials": {},
            "provider": PROVIDER, "raw_http_request": raw_hex, "subscription": subscription(secret),
            "type": "trigger", "user_id": ""}


def invoke_data(event: str, payload: dict, raw_hex: str) -> dict:
    return {"action": "invoke_trigger_event", "credential_type": "unauthorized", "credentials": {},
            "event": event, "parameters": {}, "payload": payload, "provider": PROVIDER,
            "raw_http_request": raw_hex, "subscription": subscription(), "type": "trigger", "user_id": ""}


def parse_http_response(hex_str: str) -> tuple[int, dict[str, str], bytes]:
    raw = binascii.unhexlify(hex_str)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, body


def stream_of(msgs: list[dict]) -> dict:
    """The single stream chunk of a finished session (asserts the stream+end shape)."""
    types = [m.get("type") for m in msgs]
    assert types == ["stream", "end"], f"expected [stream, end], got {types}: {msgs}"
    assert msgs[-1].get("data") == {}, f"end data should be {{}}: {msgs[-1]}"
    return msgs[0]["data"]


# ----------------------------------------------------------------------------------------------
# checks

class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn) -> object:
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - report and carry on
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            return None
        self.passed += 1
        print(f"ok   {name}")
        return value


def envelope(ev: dict) -> dict:
    return {k: ev[k] for k in ("id", "object", "created_at", "type", "data")}


def run_checks(p: Plugin, res: Results) -> None:
    ev, body = event_body("batch.completed")
    raw_hex, _ = raw_request(body)
    state: dict = {}

    def good_dispatch():
        out = stream_of(p.call(dispatch_data(raw_hex)))
        assert out["events"] == ["batch_completed", "any_event"], out["events"]
        assert out["user_id"] == "", out["user_id"]
        status, headers, rbody = parse_http_response(out["response"])
        assert status == 200, status
        assert json.loads(rbody) == {"status": "ok"}, rbody
        assert headers.get("content-length") == str(len(rbody)), headers
        assert out["payload"] == ev, out["payload"]
        state["payload"] = out["payload"]
        state["response_raw"] = binascii.unhexlify(out["response"])
    res.check("dispatch signed batch.completed -> [batch_completed, any_event] + HTTP 200", good_dispatch)

    def invoke(event: str):
        def run():
            out = stream_of(p.call(invoke_data(event, state.get("payload", ev), raw_hex)))
            assert out == {"variables": envelope(ev), "cancelled": False}, out
        return run
    res.check("invoke batch_completed with the dispatch payload -> envelope variables", invoke("batch_completed"))
    res.check("invoke any_event with the dispatch payload -> envelope variables", invoke("any_event"))

    def invoke_mismatch():
        out = stream_of(p.call(invoke_data("response_completed", ev, raw_hex)))
        assert out == {"variables": {}, "cancelled": True}, out
    res.check("invoke response_completed with a batch payload -> cancelled", invoke_mismatch)

    def rejected(data: dict, want_status: int = 401):
        out = stream_of(p.call(data))
        assert out["events"] == [], out["events"]
        status, headers, rbody = parse_http_response(out["response"])
        assert status == want_status, status
        assert headers.get("content-length") == str(len(rbody)), (headers, rbody)
        return out

    def bad_sig():
        bad_hex, _ = raw_request(body, sig="v1," + base64.b64encode(b"\0" * 32).decode())
        rejected(dispatch_data(bad_hex))
    res.check("dispatch with a bad signature -> HTTP 401, events []", bad_sig)

    res.check("dispatch signed with another secret -> HTTP 401, events []",
              lambda: rejected(dispatch_data(raw_request(body, secret=WRONG_SECRET)[0])))
    res.check("dispatch with a stale timestamp (10 min) -> HTTP 401, events []",
              lambda: rejected(dispatch_data(raw_request(body, ts=int(time.time()) - 600)[0])))
    res.check("dispatch with an empty webhook_secret -> HTTP 401, events []",
              lambda: rejected(dispatch_data(raw_hex, secret="")))

    def unknown_type():
        ev2, body2 = event_body("live.call.incoming")
        out = stream_of(p.call(dispatch_data(raw_request(body2)[0])))
        assert out["events"] == ["any_event"], out["events"]
        assert parse_http_response(out["response"])[0] == 200
    res.check("dispatch of an undeclared OpenAI type -> [any_event] + HTTP 200", unknown_type)

    def padded():
        ev3, body3 = event_body("batch.completed", 1024)
        assert len(body3) == 1024, len(body3)
        out = stream_of(p.call(dispatch_data(raw_request(body3)[0])))
        assert out["events"] == ["batch_completed", "any_event"] and out["payload"] == ev3
    res.check("dispatch of a 1 KiB batch.completed body", padded)

    def stdout_clean():
        assert p.heartbeats >= 1 and p.non_json_lines == 0, f"heartbeats={p.heartbeats} non_json={p.non_json_lines}"
    res.check("heartbeat seen and nothing but JSON on stdout", stdout_clean)
    if "response_raw" in state:
        print(f"     dispatch response bytes: {state['response_raw']!r}")


def probe_missing_credential_type(p: Plugin) -> str:
    """Informational: the daemon omits credential_type when empty; what does the SDK do?"""
    _, body = event_body("batch.completed")
    data = dispatch_data(raw_request(body)[0])
    del data["credential_type"]
    msgs = p.call(data)
    if msgs and msgs[0].get("type") == "error":
        e = msgs[0]["data"]
        return f"error_type={e.get('error_type')} message={e.get('message', '')[:160]!r}"
    return "answered: " + json.dumps(msgs)[:200]


# ----------------------------------------------------------------------------------------------
# measurements

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench(p: Plugin, rounds: int, body_bytes: int) -> None:
    ev, body = event_body("batch.completed", body_bytes)
    now = int(time.time())
    reqs = [dispatch_data(raw_request(body, ts=now)[0]) for _ in range(rounds)]
    for d in reqs[:20]:  # warm-up
        p.call(d)
    lat = []
    for d in reqs:
        t = time.perf_counter()
        out = p.call(d)
        lat.append(time.perf_counter() - t)
        assert out[0]["data"]["events"] == ["batch_completed", "any_event"]
    us = [x * 1e6 for x in lat]
    print(f"dispatch round trip, {rounds} sequential, body {len(body)} B: "
          f"p50 {statistics.median(us):.0f} us, p90 {pct(us, 0.9):.0f} us, "
          f"min {min(us):.0f} us, max {max(us):.0f} us")

    raw_hex = reqs[0]["raw_http_request"]
    pairs = []
    for d in reqs:
        t = time.perf_counter()
        out = p.call(d)
        p.call(invoke_data("batch_completed", out[0]["data"]["payload"], raw_hex))
        pairs.append(time.perf_counter() - t)
    us = [x * 1e6 for x in pairs]
    print(f"dispatch+invoke pair, {rounds} sequential: p50 {statistics.median(us):.0f} us, "
          f"p90 {pct(us, 0.9):.0f} us")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--body-bytes", type=int, default=0, help="pad the benchmark body to this size (0 = natural)")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args()
    if not os.access(PY, os.X_OK):
        print(f"missing {PY}: run ./setup.sh first")
        print("0 passed, 1 failed")
        return 1

    res = Results()
    p = Plugin()
    try:
        hb = res.check("first heartbeat within 120 s", p.wait_heartbeat)
        if hb is not None:
            print(f"     spawn -> first heartbeat: {hb * 1000:.0f} ms "
                  f"(other stdout objects before it: {len(p.other_lines)}: the manifest dump and a log event)")
            run_checks(p, res)
            print("     dispatch without credential_type (daemon omits it when empty): "
                  + probe_missing_credential_type(p))
            if not args.no_bench:
                bench(p, args.rounds, args.body_bytes)
                if args.body_bytes != 1024:
                    bench(p, args.rounds, 1024)
            st = p.vm_status()
            print(f"plugin process: VmHWM {st.get('VmHWM', '?')}, VmRSS {st.get('VmRSS', '?')}, "
                  f"Threads {st.get('Threads', '?')}")
    except Exception as e:  # noqa: BLE001
        res.failed += 1
        print(f"FAIL driver: {type(e).__name__}: {e}")
    finally:
        print("stdin EOF: " + p.close())
        tail = p.stderr_tail().strip()
        if tail:
            print("plugin stderr tail:\n" + tail)
    print(f"{res.passed} passed, {res.failed} failed")
    return 0 if res.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
