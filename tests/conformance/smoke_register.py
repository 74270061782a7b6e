#!/usr/bin/env python3
"""Smoke test of the whole remote-debugging path against the REAL Dify plugin daemon.

Expects `bash tests/conformance/services.sh start` to have run (reads its env file, see dify_daemon.py).
Starts nothing itself. Python 3 stdlib only. Talks to 127.0.0.1 only.

What it proves, playing the plugin by hand over TCP:
  1. POST /plugin/<tenant>/debugging/key with X-Api-Key returns a key;
  2. a registration (handshake, manifest_declaration, trigger_declaration, asset_chunk, end) with a minimal
     hand-made trigger declaration is accepted (no plain-text rejection line, connection stays open) and the
     daemon installs the plugin into the tenant;
  3. POST /plugin/<tenant>/dispatch/trigger/dispatch_event (X-Api-Key, X-Plugin-ID) makes the daemon write a
     stdin-style request on our socket; we answer with stream+end and check the SSE body;
  4. the same for invoke_event, answered with an `error` session message (checks how errors surface);
  5. negative registrations: a wrong key and a trigger declaration without subscription_schema are rejected
     with the plain-text lines NOTES.md lists.

Exit status 0 and a final "N passed, 0 failed" line when everything holds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dify_daemon import (  # noqa: E402
    Daemon,
    RemotePlugin,
    SSEResult,
    load_env,
    raw_http_request_hex,
    raw_http_response_hex,
)

AUTHOR = "conformance"
NAME = "smoke_trigger"
PLUGIN_ID = f"{AUTHOR}/{NAME}"
PROVIDER = "smoke_trigger"
ICON = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n'


def i18n(s: str) -> dict:
    return {"en_US": s}


def manifest() -> dict:
    # PluginDeclaration (pkg/entities/plugin_entities/plugin_declaration.go), struct-validated at registration.
    return {
        "version": "0.0.1",
        "type": "plugin",
        "author": AUTHOR,
        "name": NAME,
        "label": i18n("Smoke trigger"),
        "description": i18n("Hand-made trigger plugin used by the conformance smoke test"),
        "icon": "icon.svg",
        "resource": {"memory": 1048576},
        "plugins": {"triggers": ["provider/smoke_trigger.yaml"]},
        "meta": {
            "version": "0.0.1",
            "arch": ["amd64", "arm64"],
            "runner": {"language": "python", "version": "3.12", "entrypoint": "main"},
        },
        "tags": ["trigger"],
        "created_at": "2026-01-01T00:00:00Z",
        "privacy": "PRIVACY.md",
    }


def trigger_provider(with_subscription_schema: bool = True) -> dict:
    # TriggerProviderDeclaration (pkg/entities/plugin_entities/trigger_declaration.go)
    p = {
        "identity": {
            "author": AUTHOR,
            "name": PROVIDER,
            "label": i18n("Smoke trigger"),
            "description": i18n("Smoke trigger provider"),
            "icon": "icon.svg",
            "tags": ["trigger"],
        },
        "subscription_schema": [
            {
                "name": "webhook_secret",
                "type": "secret-input",
                "required": False,
                "label": i18n("Webhook secret"),
            }
        ],
        "subscription_constructor": None,
        "events": [
            {
                "identity": {"author": AUTHOR, "name": "ping", "label": i18n("Ping")},
                "description": i18n("A ping event"),
                "parameters": [],
                "output_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
            }
        ],
    }
    if not with_subscription_schema:
        del p["subscription_schema"]
    return p


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name: str, cond: bool, detail="") -> bool:
        if cond:
            self.passed += 1
            print(f"ok   - {name}")
        else:
            self.failed += 1
            print(f"FAIL - {name}: {detail}")
        return cond


def log_tail(env: dict, n: int = 30) -> str:
    path = env.get("DIFY_DAEMON_LOG")
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def expect_rejection(env: dict, key: str, provider: dict, want: str, c: Checks, label: str) -> None:
    with RemotePlugin(env, key) as p:
        line = p.register_expecting_reply(manifest(), "trigger_declaration", [provider], {"icon.svg": ICON})
        c.check(
            f"rejected: {label}",
            line is not None and line != b"" and want in line.decode("utf-8", "replace"),
            f"got {line!r}",
        )
        if line:
            print(f"       daemon said: {line.decode('utf-8', 'replace')}")


def main() -> int:
    env = load_env()
    d = Daemon(env)
    c = Checks()
    tenant = env["DIFY_DAEMON_TENANT_ID"]

    # 1. key
    key = d.debugging_key()
    c.check("debugging key is a UUID-like string", len(key) == 36 and key.count("-") == 4, key)
    c.check("debugging key is stable per tenant", d.debugging_key() == key)
    st, body = d.json("POST", f"/plugin/{tenant}/debugging/key", headers={"X-Api-Key": "wrong"})
    c.check("debugging key needs X-Api-Key", st == 401, f"{st} {body}")

    # 2. registration
    plugin = RemotePlugin(env, key)
    try:
        plugin.register(manifest(), "trigger_declaration", [trigger_provider()], {"icon.svg": ICON})
        plugin.start_heartbeats(interval=10)
        line = plugin.read_line(timeout=2.5)
        if not c.check("registration not rejected (no plain-text line within 2.5 s, socket open)", line is None,
                       f"daemon wrote {line!r}\n{log_tail(env)}"):
            return finish(c)
        try:
            inst = d.wait_installed(PLUGIN_ID, timeout=10)
            c.check("daemon installed the debugging plugin into the tenant", inst.get("runtime_type") == "remote",
                    json.dumps(inst)[:400])
            print(f"       plugin_unique_identifier = {inst.get('plugin_unique_identifier')}")
        except RuntimeError as e:
            c.check("daemon installed the debugging plugin into the tenant", False, str(e))
            return finish(c)

        st, body = d.json("GET", f"/plugin/{tenant}/management/trigger?plugin_id={PLUGIN_ID}&provider={PROVIDER}")
        c.check("GET management/trigger returns the declaration", st == 200 and body.get("code") == 0,
                json.dumps(body)[:300])

        # 3. dispatch_trigger_event
        webhook_body = b'{"id":"evt_smoke","type":"batch.completed"}'
        raw_req = raw_http_request_hex(
            "POST", "/triggers/plugin/abc",
            [("Host", "dify.example"), ("Content-Type", "application/json"),
             ("Content-Length", str(len(webhook_body)))],
            webhook_body,
        )
        subscription = {"endpoint": "https://dify.example/triggers/plugin/abc", "expires_at": -1,
                        "parameters": {}, "properties": {"webhook_secret": "whsec_x"}}
        data = {"provider": PROVIDER, "subscription": subscription, "raw_http_request": raw_req,
                "credentials": {}, "credential_type": "unauthorized"}
        ack = raw_http_response_hex(200, "OK", [("Content-Type", "application/json"), ("Content-Length", "16")],
                                    b'{"status": "ok"}')
        result: dict = {}

        def call(path: str, payload: dict, slot: str, user_id: str = ""):
            try:
                # the top-level "user_id" of the HTTP body becomes data.user_id on the plugin side
                result[slot] = d.dispatch(path, PLUGIN_ID, payload, user_id=user_id, timeout=30)
            except Exception as e:  # noqa: BLE001
                result[slot] = e

        t = threading.Thread(target=call, args=("trigger/dispatch_event", data, "dispatch"))
        t.start()
        line = plugin.read_line(timeout=10)
        req = json.loads(line) if line else None
        ok = c.check("daemon forwarded a request line on the socket", bool(req) and req.get("event") == "request",
                     f"{line!r}")
        if ok:
            print(f"       request envelope keys: {sorted(req)}; data keys: {sorted(req['data'])}")
            rd = req["data"]
            c.check("request data: type=trigger action=dispatch_trigger_event",
                    rd.get("type") == "trigger" and rd.get("action") == "dispatch_trigger_event", rd)
            c.check("request data carries provider/subscription/raw_http_request/credentials/credential_type flat",
                    rd.get("provider") == PROVIDER and rd.get("subscription") == subscription
                    and rd.get("raw_http_request") == raw_req and rd.get("credentials") == {}
                    and rd.get("credential_type") == "unauthorized" and rd.get("user_id") == "", rd)
            plugin.reply(req["session_id"], {"user_id": "actor-1", "events": ["ping"], "response": ack,
                                             "payload": {"k": "v"}})
        t.join(35)
        r = result.get("dispatch")
        if isinstance(r, Exception) or r is None:
            c.check("dispatch HTTP call returned", False, repr(r))
        else:
            print(f"       HTTP {r.status} {r.headers.get('Content-Type')}: {r.raw[:300]!r}")
            c.check("dispatch answered 200 text/event-stream", r.status == 200 and
                    r.headers.get("Content-Type", "").startswith("text/event-stream"), r)
            c.check("dispatch SSE: one success chunk with our response",
                    len(r.events) == 1 and r.events[0].get("code") == 0
                    and r.events[0].get("data") == {"user_id": "actor-1", "events": ["ping"],
                                                    "payload": {"k": "v"}, "response": ack}, r.events)

        # 4. invoke_trigger_event answered with an error
        inv = {"provider": PROVIDER, "event": "ping", "subscription": subscription, "raw_http_request": raw_req,
               "parameters": {}, "payload": {"k": "v"}, "credentials": {}, "credential_type": "unauthorized"}
        t = threading.Thread(target=call, args=("trigger/invoke_event", inv, "invoke", "actor-1"))
        t.start()
        line = plugin.read_line(timeout=10)
        req = json.loads(line) if line else None
        if c.check("invoke_event forwarded", bool(req) and req.get("data", {}).get("action") == "invoke_trigger_event",
                   f"{line!r}"):
            c.check("invoke request data: user_id from body, event, payload",
                    req["data"].get("user_id") == "actor-1" and req["data"].get("event") == "ping"
                    and req["data"].get("payload") == {"k": "v"}, req["data"])
            plugin.reply(req["session_id"], error={"error_type": "TriggerValidationError",
                                                   "message": "bad signature", "args": {}})
        t.join(35)
        r = result.get("invoke")
        if not isinstance(r, Exception) and r is not None:
            print(f"       HTTP {r.status}: {r.raw[:300]!r}")
            ev = r.events[0] if r.events else {}
            msg = ev.get("message", "")
            try:
                inner = json.loads(msg)
            except ValueError:
                inner = {}
            c.check("plugin error surfaces as SSE chunk code -500 with JSON message {error_type,message,args}",
                    r.status == 200 and ev.get("code") == -500 and ev.get("data") is None
                    and inner.get("error_type") == "PluginInvokeError", r.events)
            try:
                innermost = json.loads(inner.get("message", ""))
            except ValueError:
                innermost = {}
            c.check("...and the plugin's own error_type/message are nested inside it",
                    innermost.get("error_type") == "TriggerValidationError"
                    and innermost.get("message") == "bad signature", inner)
        else:
            c.check("invoke HTTP call returned", False, repr(r))

        # 5. the other four trigger actions: request data the plugin sees, and the SSE the caller gets back
        creds = {"api_key": "sk-test"}
        new_sub = {"endpoint": "https://dify.example/triggers/plugin/abc", "expires_at": 1900000000,
                   "parameters": {"events": ["ping"]}, "properties": {"external_id": "wh_1"}}
        cases = [
            ("trigger/validate_credentials", "validate_trigger_credentials",
             {"provider": PROVIDER, "credentials": creds},
             {"result": True}),
            ("trigger/subscribe", "subscribe_trigger",
             {"provider": PROVIDER, "endpoint": subscription["endpoint"], "parameters": {"events": ["ping"]},
              "credentials": creds, "credential_type": "api-key"},
             {"subscription": new_sub}),
            ("trigger/unsubscribe", "unsubscribe_trigger",
             {"provider": PROVIDER, "subscription": new_sub, "credentials": creds, "credential_type": "api-key"},
             {"subscription": {"success": True, "message": "removed"}}),
            ("trigger/refresh", "refresh_trigger",
             {"provider": PROVIDER, "subscription": new_sub, "credentials": creds, "credential_type": "api-key"},
             {"subscription": dict(new_sub, expires_at=1900003600)}),
        ]
        for path, action, payload, answer in cases:
            slot = action
            t = threading.Thread(target=call, args=(path, payload, slot, "user-7"))
            t.start()
            line = plugin.read_line(timeout=10)
            req = json.loads(line) if line else {}
            rd = req.get("data", {})
            want = dict(payload, type="trigger", action=action, user_id="user-7")
            c.check(f"{path}: plugin gets data = body.data + user_id/type/action (flat)", rd == want,
                    f"got {rd}")
            if req:
                plugin.reply(req["session_id"], answer)
            t.join(35)
            r = result.get(slot)
            c.check(f"{path}: SSE success chunk echoes our answer",
                    not isinstance(r, Exception) and r is not None and len(r.events) == 1
                    and r.events[0].get("code") == 0 and r.events[0].get("data") == answer,
                    r)

        # 6. the same plugin addressed by unique identifier (/v2/invoke/dispatch/..., tenant in the body)
        uid = inst.get("plugin_unique_identifier")

        def call_v2():
            try:
                st, hdrs, raw = d.request(
                    "POST", "/v2/invoke/dispatch/trigger/validate_credentials",
                    {"tenant_id": tenant, "user_id": "user-8",
                     "data": {"provider": PROVIDER, "credentials": creds}},
                    {"X-Plugin-Unique-Identifier": uid}, timeout=30)
                result["v2"] = SSEResult(st, hdrs, raw)
            except Exception as e:  # noqa: BLE001
                result["v2"] = e

        t = threading.Thread(target=call_v2)
        t.start()
        line = plugin.read_line(timeout=10)
        req = json.loads(line) if line else {}
        if req:
            plugin.reply(req["session_id"], {"result": False})
        t.join(35)
        r = result.get("v2")
        c.check("/v2/invoke/dispatch/trigger/validate_credentials with X-Plugin-Unique-Identifier works",
                bool(req) and req["data"].get("user_id") == "user-8" and not isinstance(r, Exception)
                and r is not None and r.events == [{"code": 0, "message": "success", "data": {"result": False}}],
                f"req={req} r={r}")
    finally:
        plugin.close()

    # the daemon uninstalls a debugging plugin when its connection closes
    end = time.time() + 10
    gone = False
    while time.time() < end and not gone:
        gone = not any(i.get("plugin_id") == PLUGIN_ID for i in d.installations())
        time.sleep(0.3)
    c.check("disconnect uninstalls the debugging plugin", gone)

    # 5. negative registrations
    expect_rejection(env, "00000000-0000-0000-0000-000000000000", trigger_provider(),
                     "handshake failed, invalid key", c, "unknown key")
    expect_rejection(env, d.debugging_key(), trigger_provider(with_subscription_schema=False),
                     "triggers register failed, invalid triggers declaration", c,
                     "trigger_declaration without subscription_schema")
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
