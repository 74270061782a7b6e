#!/usr/bin/env python3
"""What the REAL daemon accepts or rejects at remote-debugging registration (NOTES.md §3d, evidence).

Each case mutates the minimal valid registration from smoke_register.py and records the daemon's reply:
"accepted" (silence for 1.5 s after `end`) or the plain-text rejection line. Expected outcomes are asserted, so
a daemon change shows up as a failure. Needs `services.sh start`. Stdlib only, loopback only.
"""

from __future__ import annotations

import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dify_daemon import Daemon, RemotePlugin, load_env  # noqa: E402
from smoke_register import ICON, PLUGIN_ID, manifest, trigger_provider  # noqa: E402


def run(env, d, m, kind, decls, assets):
    with RemotePlugin(env, d.debugging_key()) as p:
        line = p.register_expecting_reply(m, kind, decls, assets, wait=0.3)
        if line is None:
            line = p.read_line(timeout=1.5)
        verdict = "accepted" if line is None else (line.decode("utf-8", "replace") or "<closed>")
    # let the daemon uninstall an accepted one before the next case registers the same plugin id
    end = time.time() + 5
    while time.time() < end and any(i.get("plugin_id") == PLUGIN_ID for i in d.installations()):
        time.sleep(0.2)
    return verdict


def case(name, expect, mutate_manifest=None, mutate_provider=None, kind="trigger_declaration", assets=None,
         decls=None):
    return name, expect, mutate_manifest, mutate_provider, kind, assets, decls


def m_set(path, value):
    def f(obj):
        cur = obj
        for k in path[:-1]:
            cur = cur[k]
        if value is DELETE:
            del cur[path[-1]]
        else:
            cur[path[-1]] = value
    return f


DELETE = object()
OK = "accepted"

CASES = [
    case("baseline", OK),
    # manifest_declaration (PluginDeclaration, struct-validated when decoded)
    case("manifest: created_at without zone", "invalid plugin declaration", m_set(["created_at"], "2026-01-01T00:00:00")),
    case("manifest: resource.memory 0", "invalid plugin declaration", m_set(["resource", "memory"], 0)),
    case("manifest: version 1.0", "invalid plugin declaration", m_set(["version"], "1.0")),
    case("manifest: runner.language go", "invalid plugin declaration", m_set(["meta", "runner", "language"], "go")),
    case("manifest: meta.arch [x86_64]", "invalid plugin declaration", m_set(["meta", "arch"], ["x86_64"])),
    case("manifest: unknown tag", "invalid plugin declaration", m_set(["tags"], ["webhooks"])),
    case("manifest: label without en_US", "invalid plugin declaration", m_set(["label"], {"zh_Hans": "x"})),
    case("manifest: author upper-case (checked only at end: ManifestValidate)", "invalid manifest detected",
         m_set(["author"], "Conformance")),
    case("manifest: plugins.triggers empty (not checked)", OK, m_set(["plugins", "triggers"], [])),
    # trigger_declaration (TriggerProviderDeclaration, struct-validated per element)
    case("trigger: subscription_schema null", "invalid triggers declaration",
         mutate_provider=m_set(["subscription_schema"], None)),
    case("trigger: subscription_schema []", OK, mutate_provider=m_set(["subscription_schema"], [])),
    # subscription_schema is `validate:"required"` WITHOUT `dive` (trigger_declaration.go:144): its items are
    # not validated at all at registration, unlike subscription_constructor.credentials_schema (`dive`).
    case("trigger: subscription_schema item type 'string' (items not validated)", OK,
         mutate_provider=m_set(["subscription_schema", 0, "type"], "string")),
    case("trigger: subscription_schema item without label (items not validated)", OK,
         mutate_provider=m_set(["subscription_schema", 0, "label"], DELETE)),
    case("trigger: constructor credentials_schema item type 'string' (dive: validated)",
         "invalid triggers declaration",
         mutate_provider=m_set(["subscription_constructor"], {
             "parameters": [], "credentials_schema": [{"name": "k", "type": "string", "required": True,
                                                       "label": {"en_US": "K"}}]})),
    case("trigger: identity.name with a dot", "invalid triggers declaration",
         mutate_provider=m_set(["identity", "name"], "smoke.trigger")),
    case("trigger: identity.description missing (nested en_US required)", "invalid triggers declaration",
         mutate_provider=m_set(["identity", "description"], DELETE)),
    case("trigger: identity.icon missing", "invalid triggers declaration",
         mutate_provider=m_set(["identity", "icon"], DELETE)),
    case("trigger: events null", OK, mutate_provider=m_set(["events"], None)),
    case("trigger: event description missing", "invalid triggers declaration",
         mutate_provider=m_set(["events", 0, "description"], DELETE)),
    case("trigger: event parameters null", OK, mutate_provider=m_set(["events", 0, "parameters"], None)),
    case("trigger: event parameter type 'secret-input'", "invalid triggers declaration",
         mutate_provider=m_set(["events", 0, "parameters"], [
             {"name": "p", "label": {"en_US": "P"}, "type": "secret-input", "required": False}])),
    case("trigger: event output_schema missing", OK, mutate_provider=m_set(["events", 0, "output_schema"], DELETE)),
    case("trigger: subscription_constructor with parameters + credentials_schema", OK,
         mutate_provider=m_set(["subscription_constructor"], {
             "parameters": [{"name": "events", "label": {"en_US": "Events"}, "type": "checkbox", "required": True,
                             "multiple": True, "options": [{"label": {"en_US": "Ping"}, "value": "ping"}]}],
             "credentials_schema": [{"name": "api_key", "type": "secret-input", "required": True,
                                     "label": {"en_US": "API key"}}]})),
    # assets / sequence
    case("assets: icon not sent", "assets remap failed", assets={}),
    case("no trigger_declaration at all", "no registration transferred", kind=None),
    case("trigger_declaration as an object, not an array", "invalid triggers declaration",
         decls="object"),
]


def main() -> int:
    env = load_env()
    d = Daemon(env)
    passed = failed = 0
    for name, expect, mm, mp, kind, assets, decls in CASES:
        m = manifest()
        p = trigger_provider()
        if mm:
            mm(m)
        if mp:
            mp(p)
        a = {"icon.svg": ICON} if assets is None else assets
        if kind is None:
            # skip the provider message entirely
            with RemotePlugin(env, d.debugging_key()) as conn:
                for msg in RemotePlugin.registration_messages(m, "x", [], a, conn.key):
                    if msg["type"] == "x":
                        continue
                    conn.send(msg)
                line = conn.read_line(timeout=2)
            verdict = "accepted" if line is None else line.decode("utf-8", "replace")
        elif decls == "object":
            verdict = run(env, d, m, kind, copy.deepcopy(p), a)
        else:
            verdict = run(env, d, m, kind, [p], a)
        good = (verdict == OK) if expect == OK else (expect in verdict)
        passed += good
        failed += not good
        print(f"{'ok  ' if good else 'FAIL'} - {name}: {verdict[:230]}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
