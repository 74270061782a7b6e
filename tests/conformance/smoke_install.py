#!/usr/bin/env python3
"""Smoke test of the PACKAGE path against the REAL Dify plugin daemon: upload a .difypkg, install it, and let
the daemon itself build the venv (uv) and launch `python -m main` from the package.

Expects `bash tests/conformance/services.sh start` (FORCE_VERIFYING_SIGNATURE=false). Starts nothing itself.
Python 3 stdlib only. Talks to 127.0.0.1 only.

The package is a minimal hand-made trigger plugin whose main.py is a ~40-line stdlib stdio responder (no SDK):
it sends a heartbeat, then answers dispatch_trigger_event with one stream chunk + end. The chunk's payload
reports the interpreter and INSTALL_METHOD the daemon gave it.

Steps: POST .../management/install/upload/package (multipart dify_pkg) -> unique_identifier;
POST .../management/install/identifiers -> task_id; poll GET .../management/install/tasks/<id> until success;
POST .../dispatch/trigger/dispatch_event; POST .../management/uninstall.

Usage: smoke_install.py [--keep]     (--keep: leave the plugin installed)

Signature mode: when the daemon runs with FORCE_VERIFYING_SIGNATURE=true (services.sh start with
OT_VERIFY_SIGNATURES=1 OT_THIRD_PARTY_PUBLIC_KEYS=<key>.public.pem), set OT_SIGNING_KEY=<key>.private.pem:
the unsigned package must then be rejected, and the package signed with `dify signature sign -c community`
must be accepted with verified=true (NOTES.md, "Signatures").
Exit status 0 and a final "N passed, 0 failed" line when everything holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dify_daemon import (  # noqa: E402
    Daemon,
    build_difypkg,
    load_env,
    package_checksum,
    raw_http_request_hex,
)

AUTHOR = "conformance"
NAME = "smoke_pkg_trigger"
PLUGIN_ID = f"{AUTHOR}/{NAME}"
VERSION = "0.0.1"

MANIFEST = f"""\
version: {VERSION}
type: plugin
author: {AUTHOR}
name: {NAME}
label:
  en_US: Smoke package trigger
description:
  en_US: Hand-made trigger plugin package used by the conformance install smoke test
icon: icon.svg
resource:
  memory: 1048576
plugins:
  triggers:
    - provider/smoke.yaml
meta:
  version: 0.0.1
  arch:
    - amd64
    - arm64
  runner:
    language: python
    version: "3.12"
    entrypoint: main
created_at: 2026-01-01T00:00:00Z
privacy: PRIVACY.md
tags:
  - trigger
"""

PROVIDER_YAML = f"""\
identity:
  author: {AUTHOR}
  name: {NAME}
  label:
    en_US: Smoke package trigger
  description:
    en_US: Smoke package trigger provider
  icon: icon.svg
subscription_schema:
  - name: webhook_secret
    type: secret-input
    required: false
    label:
      en_US: Webhook secret
events:
  - events/ping.yaml
"""

EVENT_YAML = f"""\
identity:
  author: {AUTHOR}
  name: ping
  label:
    en_US: Ping
description:
  en_US: A ping event
parameters: []
output_schema:
  type: object
  properties:
    id:
      type: string
"""

MAIN_PY = r'''
import json, os, sys, threading, time

out_lock = threading.Lock()

def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

def heartbeats():
    while True:
        emit({"event": "heartbeat", "session_id": None, "data": {}})
        time.sleep(10)

threading.Thread(target=heartbeats, daemon=True).start()
sys.stderr.write("smoke plugin started: %s\n" % sys.version.split()[0])
sys.stderr.flush()
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    if msg.get("event") != "request":
        continue
    sid, data = msg["session_id"], msg["data"]
    if data.get("action") == "dispatch_trigger_event":
        chunk = {"user_id": "", "events": ["ping"],
                 "response": "485454502f312e3120323030204f4b0d0a436f6e74656e742d4c656e6774683a20300d0a0d0a",
                 "payload": {"python": sys.version.split()[0], "install_method": os.environ.get("INSTALL_METHOD"),
                             "cwd": os.getcwd(), "data_keys": sorted(data)}}
        emit({"event": "session", "session_id": sid, "data": {"type": "stream", "data": chunk}})
    else:
        emit({"event": "session", "session_id": sid, "data": {"type": "error", "data": {
            "error_type": "NotImplementedError", "message": data.get("action", "?"), "args": {}}}})
    emit({"event": "session", "session_id": sid, "data": {"type": "end", "data": {}}})
'''

ICON = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n'


def package_files() -> dict:
    return {
        "manifest.yaml": MANIFEST.encode(),
        "provider/smoke.yaml": PROVIDER_YAML.encode(),
        "events/ping.yaml": EVENT_YAML.encode(),
        "_assets/icon.svg": ICON,
        "main.py": MAIN_PY.encode(),
        # no dependencies; the daemon still requires the file to exist (setup_python_environment.go:441-445)
        "requirements.txt": b"# no dependencies\n",
        "README.md": b"# smoke\n",
        "PRIVACY.md": b"No data is collected.\n",
    }


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   - {name}")
        else:
            self.failed += 1
            print(f"FAIL - {name}: {detail}")
        return cond


def main() -> int:
    keep = "--keep" in sys.argv
    env = load_env()
    d = Daemon(env)
    c = Checks()

    # clean leftovers of an earlier --keep run
    for inst in d.installations():
        if inst.get("plugin_id") == PLUGIN_ID:
            d.uninstall(inst["installation_id"] if inst.get("installation_id") else inst["id"])

    files = package_files()
    pkg = build_difypkg(files)
    expected_uid = f"{PLUGIN_ID}:{VERSION}@{package_checksum(files)}"

    t0 = time.time()
    st, body = d.upload_package(pkg)
    if env.get("DIFY_DAEMON_FORCE_VERIFYING_SIGNATURE") == "true":
        c.check("unsigned package rejected under FORCE_VERIFYING_SIGNATURE=true",
                st == 200 and body.get("code") == -400 and "bad signature" in body.get("message", ""),
                json.dumps(body)[:600])
        key = os.environ.get("OT_SIGNING_KEY")
        if not c.check("OT_SIGNING_KEY set (private key matching OT_THIRD_PARTY_PUBLIC_KEYS)", bool(key)):
            return finish(c)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "smoke.difypkg")
            with open(path, "wb") as f:
                f.write(pkg)
            subprocess.run([env["DIFY_DAEMON_CLI"], "signature", "sign", path, "-p", key, "-c", "community"],
                           check=True, capture_output=True)
            with open(os.path.join(tmp, "smoke.signed.difypkg"), "rb") as f:
                pkg = f.read()
        st, body = d.upload_package(pkg)
        ok = c.check("signed package accepted", st == 200 and body.get("code") == 0, json.dumps(body)[:600])
        if not ok:
            return finish(c)
        c.check("signed package is verified=true", body["data"]["manifest"].get("verified") is True,
                body["data"].get("verification"))
        print(f"       verification = {body['data'].get('verification')}")
        # signing adds .verification.dify.json and a zip comment: a new checksum / identifier
        expected_uid = body["data"]["unique_identifier"]
    ok = c.check("upload accepted", st == 200 and body.get("code") == 0, json.dumps(body)[:600])
    if not ok:
        return finish(c)
    uid = body["data"]["unique_identifier"]
    c.check("unique_identifier = author/name:version@checksum (checksum as in decoder/checksum.go)",
            uid == expected_uid, f"{uid} != {expected_uid}")
    print(f"       unique_identifier = {uid}; verified = {body['data']['manifest'].get('verified')}")

    st, body = d.install_identifiers([uid])
    if not c.check("install task created", st == 200 and body.get("code") == 0, body):
        return finish(c)
    data = body["data"]
    if data.get("all_installed"):
        print("       already installed")
    else:
        task = d.wait_task(data["task_id"], timeout=600)
        msg = "; ".join(p.get("message", "") for p in task.get("plugins", []))
        if not c.check("install task succeeded (daemon built the venv and started python -m main)",
                       task.get("status") == "success", f"{task.get('status')}: {msg}"):
            return finish(c)
    print(f"       install took {time.time() - t0:.1f}s")

    inst = d.wait_installed(PLUGIN_ID, timeout=10)
    c.check("installation is local runtime", inst.get("runtime_type") == "local", inst.get("runtime_type"))

    raw_req = raw_http_request_hex("POST", "/triggers/plugin/x", [("Content-Type", "application/json")], b"{}")
    data = {"provider": NAME, "subscription": {"endpoint": "x", "expires_at": -1, "parameters": {},
                                               "properties": {}},
            "raw_http_request": raw_req, "credentials": {}, "credential_type": "unauthorized"}
    r = None
    for _ in range(60):  # the instance may still be starting right after the task reports success
        r = d.dispatch("trigger/dispatch_event", PLUGIN_ID, data, timeout=60)
        if r.events and r.events[0].get("code") == 0:
            break
        time.sleep(1)
    print(f"       HTTP {r.status}: {r.raw[:400]!r}")
    ok = c.check("dispatch_event answered by the daemon-launched process",
                 r.status == 200 and len(r.events) == 1 and r.events[0].get("code") == 0
                 and r.events[0]["data"].get("events") == ["ping"], r.events)
    if ok:
        p = r.events[0]["data"]["payload"]
        print(f"       plugin ran on Python {p.get('python')}, INSTALL_METHOD={p.get('install_method')}, "
              f"cwd={p.get('cwd')}")
        c.check("daemon set INSTALL_METHOD=local for the child", p.get("install_method") == "local", p)
        if env.get("DIFY_DAEMON_PY312_SUBSTITUTE") == "true":
            print("       (3.11 substitute mode: the venv interpreter is /usr/bin/python3, see NOTES.md)")
        else:
            c.check("the venv the daemon made (uv venv --python 3.12) runs CPython 3.12",
                    str(p.get("python", "")).startswith("3.12."), p.get("python"))
        c.check("cwd is <PLUGIN_WORKING_PATH>/<author>/<name>-<version>@<checksum>",
                p.get("cwd", "").endswith(f"/{AUTHOR}/{NAME}-{VERSION}@{uid.split('@')[1]}"), p.get("cwd"))

    if not keep:
        st, body = d.uninstall(inst["id"])
        c.check("uninstall accepted", st == 200 and body.get("code") == 0, body)
    return finish(c)


def finish(c: Checks) -> int:
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("0 passed, 1 failed")
        sys.exit(1)
