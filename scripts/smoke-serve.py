#!/usr/bin/env python3
"""Drives one `serve` session through a plugin command over stdio, the way the Dify daemon does,
and checks the answer: a heartbeat, then one signed OpenAI delivery dispatched to its events.

Usage: scripts/smoke-serve.py COMMAND [ARG...]
  e.g. scripts/smoke-serve.py qemu-aarch64-static dist/bin/openai-trigger-linux-arm64

For binaries that cannot run `demo` (which re-spawns itself), such as a foreign-arch build under
qemu-user. Python 3 stdlib only; exits 0 and prints what it saw when the session behaves.
"""

import base64
import hashlib
import hmac
import json
import queue
import subprocess
import sys
import threading
import time

SECRET = "whsec_" + base64.b64encode(b"smoke-test-signing-key-32-bytes!").decode()
ENDPOINT = "https://dify.localhost/triggers/plugin/smoke"


def signed_request(now):
    body = json.dumps(
        {"object": "event", "id": "evt_smoke", "type": "batch.completed", "created_at": now, "data": {"id": "batch_smoke"}}
    ).encode()
    key = base64.b64decode(SECRET[len("whsec_"):])
    mac = hmac.new(key, b"wh_smoke." + str(now).encode() + b"." + body, hashlib.sha256)
    headers = [
        ("Host", "dify.localhost"),
        ("Content-Type", "application/json"),
        ("webhook-id", "wh_smoke"),
        ("webhook-timestamp", str(now)),
        ("webhook-signature", "v1," + base64.b64encode(mac.digest()).decode()),
        ("Content-Length", str(len(body))),
    ]
    head = "POST /triggers/plugin/smoke HTTP/1.1\r\n" + "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
    return head.encode() + body


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    now = int(time.time())
    data = {
        "action": "dispatch_trigger_event",
        "type": "trigger",
        "user_id": "",
        "provider": "openai_trigger",
        "credentials": {},
        "subscription": {
            "endpoint": ENDPOINT,
            "expires_at": -1,
            "parameters": {},
            "properties": {"webhook_secret": SECRET},
        },
        "raw_http_request": signed_request(now).hex(),
    }
    line = json.dumps({"session_id": "smoke-1", "event": "request", "data": data}, separators=(",", ":"))
    command = sys.argv[1:] + ["serve"]
    started = time.monotonic()
    plugin = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = queue.Queue()

    def read_stdout():
        for raw in plugin.stdout:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=read_stdout, daemon=True).start()

    def next_message(what):
        try:
            raw = lines.get(timeout=60)
        except queue.Empty:
            raw = None
        if raw is None:
            plugin.kill()
            sys.stderr.write(plugin.stderr.read().decode())
            sys.exit("smoke test failed: no %s from %s" % (what, " ".join(command)))
        return json.loads(raw)

    # Like the daemon: wait for the first heartbeat, then send the request.
    first = next_message("heartbeat")
    if first.get("event") != "heartbeat":
        sys.exit("smoke test failed: first line is not a heartbeat: %r" % first)
    ready = time.monotonic() - started
    plugin.stdin.write((line + "\n").encode())
    plugin.stdin.flush()
    session = []
    while not session or session[-1].get("type") not in ("end", "error"):
        message = next_message("answer")
        if message.get("session_id") == "smoke-1":
            session.append(message["data"])
    plugin.stdin.close()
    status = plugin.wait(timeout=30)

    kinds = [m.get("type") for m in session]
    events = session[0].get("data", {}).get("events") if kinds == ["stream", "end"] else None
    print("command: %s" % " ".join(command))
    print("first heartbeat after %.2fs; session %r; events %r; exit status %d" % (ready, kinds, events, status))
    if kinds != ["stream", "end"] or "batch_completed" not in (events or []) or status != 0:
        sys.stderr.write(plugin.stderr.read().decode())
        sys.exit("smoke test failed: expected stream + end firing batch_completed, then exit 0")
    print("ok")


if __name__ == "__main__":
    main()
