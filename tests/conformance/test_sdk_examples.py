#!/usr/bin/env python3
"""Conformance test of the Rust SDK's example plugins (crates/dify-plugin/examples) against the REAL Dify plugin
daemon, over remote debugging and installed as packages (issue #19: "each runs … registered over remote debugging,
installed as a package, and driven through the daemon's own dispatch routes for its kind"). Every section runs twice:
[remote] (the binary registers itself) and [package] (the .difypkg dify-plugin-package wrote, uploaded and installed;
the daemon builds its venv and runs main.py, which execs the bundled binary).

Expects `bash tests/conformance/services.sh start` (reads its env file through dify_daemon.load_env) and the built
examples (`cargo build --release -p dify-plugin --examples`: target/release/examples/{google_search,duck_tools,neko,
echo_trigger}, or $OT_EXAMPLES_DIR) and their packages (run.sh's package-examples step: target/conformance-examples/
<name>.difypkg, or $OT_EXAMPLE_PACKAGES). Python 3 stdlib only; talks to loopback only.

For each example: a debugging key from the daemon (POST /plugin/<tenant>/debugging/key); the example binary started
with INSTALL_METHOD=remote, REMOTE_INSTALL_URL=<debug host:port>, REMOTE_INSTALL_KEY=<key>; the daemon must install it
for the tenant (management/list, runtime remote) and list what it declares through its management routes
(management/tools, management/tool, the installation's endpoint declaration). Then, only through the daemon's routes:
  - tools: POST /plugin/<tenant>/dispatch/tool/invoke (every tool; the ToolInvokeMessages the daemon relays as SSE),
    …/tool/validate_credentials (good and bad), …/tool/get_runtime_parameters, plus the errors for an unknown
    tool/provider and a missing required parameter;
  - triggers: POST /plugin/<tenant>/dispatch/trigger/dispatch_event and …/trigger/invoke_event (the payload, the
    sender's answer, a token refusal, a node's filter), a request naming another provider, subscribe without a
    constructor, a raw request that is not HTTP;
  - endpoints: POST /plugin/<tenant>/endpoint/setup (the daemon validates the settings), endpoint/list/plugin for the
    hook id, then real HTTP requests to the daemon's /e/<hook_id>/<path> (status, headers, body, a streamed body as
    separate HTTP chunks, the request as the plugin saw it, 404/405, a handler error), disable/enable, remove.
Each example is stopped after its section; the daemon must then uninstall it.

Endpoint settings of type secret-input need the Dify inner API (`invoke/encrypt`), which this harness
does not run; neither example declares one, so setup and every call work without it (calldify EncryptRequired).

Knobs: OT_EXAMPLES_DIR (directory of the example binaries), OT_KEEP_TMP=1 (keep the examples' stderr logs).
Exit status 0 and a final "N passed, 0 failed" line when everything holds; a step that cannot run is a failure.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the work tree

from dify_daemon import Daemon, load_env  # noqa: E402
from test_openai_trigger import (  # noqa: E402
    Checks, PluginProcess, clean_env, finish, package_checksum, plugin_error, sse_chunk, wait_until)

AUTHOR = "langgenius"
VERSION = "0.0.1"
USER = "u-sdk-examples"


# ============================================================================================ daemon helpers


class Api:
    def __init__(self, env: dict):
        self.env = env
        self.d = Daemon(env)
        self.tenant = env["DIFY_DAEMON_TENANT_ID"]

    def installation(self, plugin_id: str):
        for item in self.d.installations():
            if item.get("plugin_id") == plugin_id:
                return item
        return None

    def tool_providers(self) -> list:
        st, body = self.d.json("GET", f"/plugin/{self.tenant}/management/tools?page=1&page_size=256")
        if st != 200 or body.get("code") != 0:
            raise RuntimeError(f"management/tools: HTTP {st} {body}")
        return body.get("data") or []

    def tool_provider(self, plugin_id: str):
        for item in self.tool_providers():
            if item.get("plugin_id") == plugin_id:
                return item
        return None

    def dispatch(self, suffix: str, plugin_id: str, data: dict):
        return self.d.dispatch(suffix, plugin_id, data, user_id=USER, timeout=30)

    def endpoints(self, plugin_id: str) -> list:
        st, body = self.d.json(
            "GET", f"/plugin/{self.tenant}/endpoint/list/plugin?plugin_id={plugin_id}&page=1&page_size=100")
        if st != 200 or body.get("code") != 0:
            raise RuntimeError(f"endpoint/list/plugin: HTTP {st} {body}")
        return body.get("data") or []

    def endpoint_call(self, action: str, body: dict):
        return self.d.json("POST", f"/plugin/{self.tenant}/endpoint/{action}", body)

    def http(self, method: str, path: str, headers: list | None = None, body: bytes = b"", timeout: float = 30):
        """A real HTTP/1.1 request to the daemon's public port (no X-Api-Key: /e/ is the public route), read raw so
        the chunked transfer encoding stays visible. Returns (status, headers lower-cased, body, chunks|None)."""
        host, port = self.d.host, self.d.port
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers or []]
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(raw)
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        chunks = None
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    break
                chunks.append(rest[:size])
                rest = rest[size + 2:]
            payload = b"".join(chunks)
        elif "content-length" in hdrs:
            payload = rest[: int(hdrs["content-length"])]
        else:
            payload = rest
        return status, hdrs, payload, chunks


def frames(sse) -> list:
    """The `data` of every success frame of a dispatch answer (None when any frame is not a success)."""
    if sse.status != 200 or not sse.events or any(e.get("code") != 0 for e in sse.events):
        return None
    return [e.get("data") for e in sse.events]


def is_error(sse, inner_type: str) -> bool:
    """One -500 frame carrying the plugin's error of `inner_type` (relayed as PluginInvokeError)."""
    if sse.status != 200 or len(sse.events) != 1 or sse.events[0].get("code") != -500:
        return False
    outer, inner, _ = plugin_error(sse)
    return outer == "PluginInvokeError" and inner == inner_type


def icon_remapped(name) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[0-9a-f]{64}\.svg", name) is not None


# ============================================================================================ one example


class Example:
    """One example plugin, run the way `mode` says: "remote" (the binary registers over remote debugging) or
    "package" (its .difypkg, written by dify-plugin-package, uploaded and installed; the daemon runs it locally)."""

    def __init__(self, c: Checks, api: Api, tmp: str, binary: str, name: str, plugin_id: str,
                 mode: str = "remote", package: str = ""):
        self.c, self.api, self.tmp, self.binary, self.name, self.plugin_id = c, api, tmp, binary, name, plugin_id
        self.mode, self.package = mode, package
        self.proc: PluginProcess | None = None
        self.uid = ""
        self.installation = None

    def start(self, probe=None) -> bool:
        """Start the example in its mode; for a package, wait until `probe(self)` gets an answer from the plugin."""
        self.uninstall_leftover()
        return self.start_remote() if self.mode == "remote" else self.start_package(probe)

    def uninstall_leftover(self) -> None:
        leftover = self.api.installation(self.plugin_id)
        if leftover is not None:
            self.c.note(f"{self.plugin_id} was left installed ({leftover.get('runtime_type')}); uninstalling")
            self.api.d.uninstall(leftover["id"])
            wait_until(lambda: self.api.installation(self.plugin_id) is None, 15)

    def start_package(self, probe) -> bool:
        """Upload and install the example's package; the daemon builds its venv and runs main.py, which execs the
        bundled binary."""
        c = self.c
        if not c.check(f"{self.name}: package exists: {self.package}", os.path.isfile(self.package),
                       "run.sh's package-examples step writes it (dify-plugin-package)"):
            return False
        pkg = open(self.package, "rb").read()
        files = {}
        with zipfile.ZipFile(io.BytesIO(pkg)) as z:
            for info in z.infolist():
                files[info.filename] = z.read(info)
        c.check(f"{self.name}: the package holds manifest.yaml, main.py, requirements.txt and "
                f"bin/{self.name}-linux-amd64, and no directory entries",
                {"manifest.yaml", "main.py", "requirements.txt", f"bin/{self.name}-linux-amd64"} <= set(files)
                and not [n for n in files if n.endswith("/")], sorted(files))
        st, body = self.api.d.upload_package(pkg, filename=os.path.basename(self.package))
        if not c.check(f"{self.name}: upload accepted (code 0)", st == 200 and body.get("code") == 0,
                       json.dumps(body)[:600]):
            return False
        uid = body["data"]["unique_identifier"]
        c.check(f"{self.name}: unique_identifier = {self.plugin_id}:{VERSION}@<the daemon's checksum of the files>",
                uid == f"{self.plugin_id}:{VERSION}@{package_checksum(files)}", uid)
        st, body = self.api.d.install_identifiers([uid])
        if not c.check(f"{self.name}: install task created", st == 200 and body.get("code") == 0, body):
            return False
        if not body["data"].get("all_installed"):
            task = self.api.d.wait_task(body["data"]["task_id"], timeout=300)
            if not c.check(f"{self.name}: install task succeeded (the daemon made the venv and started main.py)",
                           task.get("status") == "success",
                           "; ".join(p.get("message", "") for p in task.get("plugins", []))):
                return False
        inst = wait_until(lambda: self.api.installation(self.plugin_id), 15)
        if not c.check(f"{self.name}: installed from the package: a local runtime with this uid",
                       inst and inst.get("runtime_type") == "local" and inst.get("plugin_unique_identifier") == uid,
                       json.dumps(inst)[:400]):
            return False
        self.installation, self.uid = inst, uid
        if probe is not None:
            c.check(f"{self.name}: the installed plugin answers through the daemon (its binary started)",
                    wait_until(lambda: probe(self), 60), "no answer within 60 s")
        return True

    def start_remote(self) -> bool:
        """Start the example in remote mode and wait until the daemon installs it."""
        c = self.c
        if not c.check(f"{self.name}: example binary exists: {self.binary}", os.access(self.binary, os.X_OK),
                       "build it with cargo build --release -p dify-plugin --examples (or set OT_EXAMPLES_DIR)"):
            return False
        key = self.api.d.debugging_key()
        addr = f"{self.api.env['DIFY_DAEMON_DEBUG_HOST']}:{self.api.env['DIFY_DAEMON_DEBUG_PORT']}"
        env = clean_env({"INSTALL_METHOD": "remote", "REMOTE_INSTALL_URL": addr, "REMOTE_INSTALL_KEY": key})
        self.proc = PluginProcess(self.binary, [], self.tmp, self.tmp, self.name, env)
        inst = wait_until(lambda: self.api.installation(self.plugin_id), 20)
        if not c.check(f"{self.name}: registered over remote debugging: the daemon installed {self.plugin_id} "
                       "for the tenant (management/list)", inst,
                       f"not listed; alive={self.proc.alive()} stderr:\n{self.proc.stderr()[-1500:]}"):
            return False
        self.installation = inst
        self.uid = inst.get("plugin_unique_identifier", "")
        c.check(f"{self.name}: a remote runtime with uid {self.plugin_id}:{VERSION}@<64 hex>",
                inst.get("runtime_type") == "remote"
                and re.fullmatch(re.escape(f"{self.plugin_id}:{VERSION}@") + "[0-9a-f]{64}", self.uid) is not None,
                json.dumps({k: inst.get(k) for k in ("runtime_type", "plugin_unique_identifier")}))
        time.sleep(1.0)
        c.check(f"{self.name}: the process keeps running after registration, stdout empty",
                self.proc.alive() and os.path.getsize(self.proc.stdout_path) == 0, self.proc.stderr()[-800:])
        c.check(f"{self.name}: the debugging key never appears in its stderr", key not in self.proc.stderr())
        return True

    def stop(self) -> None:
        if self.mode == "package":
            if self.installation is not None:
                st, body = self.api.d.uninstall(self.installation["id"])
                gone = wait_until(lambda: self.api.installation(self.plugin_id) is None, 15)
                self.c.check(f"{self.name}: uninstalled; no longer listed", st == 200 and gone, body)
            return
        if self.proc is None:
            return
        self.proc.stop()
        if self.installation is None:
            return
        gone = wait_until(lambda: self.api.installation(self.plugin_id) is None, 15)
        self.c.check(f"{self.name}: stopped; the daemon uninstalled it on disconnect", gone,
                     json.dumps(self.api.installation(self.plugin_id))[:300])

    def tool(self, provider: str, tool: str, params: dict, credentials: dict | None = None):
        return self.api.dispatch("tool/invoke", self.plugin_id, {
            "provider": provider, "tool": tool, "tool_parameters": params,
            "credentials": credentials or {}, "credential_type": "api-key"})

    def validate(self, provider: str, credentials: dict):
        return self.api.dispatch("tool/validate_credentials", self.plugin_id,
                                 {"provider": provider, "credentials": credentials})

    def runtime_parameters(self, provider: str, tool: str):
        return self.api.dispatch("tool/get_runtime_parameters", self.plugin_id,
                                 {"provider": provider, "tool": tool, "credentials": {}})

    # -- endpoints ------------------------------------------------------------------------------

    def setup_endpoint(self, name: str, settings: dict):
        """(response body of endpoint/setup, the new endpoint row or None)."""
        before = {e.get("id") for e in self.api.endpoints(self.plugin_id)}
        st, body = self.api.endpoint_call("setup", {
            "plugin_unique_identifier": self.uid, "user_id": USER, "settings": settings, "name": name})
        if st != 200 or body.get("code") != 0:
            return body, None
        new = [e for e in self.api.endpoints(self.plugin_id) if e.get("id") not in before]
        return body, (new[0] if len(new) == 1 else None)

    def remove_endpoint(self, endpoint: dict) -> None:
        st, body = self.api.endpoint_call("remove", {"endpoint_id": endpoint["id"]})
        self.c.check(f"{self.name}: endpoint/remove", st == 200 and body.get("code") == 0, body)
        gone = wait_until(lambda: all(e.get("id") != endpoint["id"] for e in self.api.endpoints(self.plugin_id)), 5)
        self.c.check(f"{self.name}: the removed endpoint is no longer listed", gone)
        st, _, _, _ = self.api.http("GET", f"/e/{endpoint['hook_id']}/")
        self.c.check(f"{self.name}: /e/<removed hook>/ answers 404", st == 404, st)


def check_tool_listing(ex: Example, provider: str, tools: list, credentials: list, author: str = AUTHOR) -> dict | None:
    c = ex.c
    entry = ex.api.tool_provider(ex.plugin_id)
    if not c.check(f"{ex.name}: management/tools lists provider {provider} of {ex.plugin_id}",
                   entry and entry.get("provider") == provider and entry.get("plugin_unique_identifier") == ex.uid,
                   json.dumps(entry)[:400]):
        return None
    decl = entry.get("declaration") or {}
    names = [t.get("identity", {}).get("name") for t in decl.get("tools") or []]
    c.check(f"{ex.name}: declaration lists the tools {tools}", names == tools, names)
    ident = decl.get("identity") or {}
    c.check(f"{ex.name}: provider identity {author}/{provider}, icon stored as an asset (the daemon remapped its name)",
            ident.get("author") == author and ident.get("name") == provider and icon_remapped(ident.get("icon")),
            ident)
    schema = [(s.get("name"), s.get("type"), s.get("required")) for s in decl.get("credentials_schema") or []]
    c.check(f"{ex.name}: credentials_schema as declared {credentials}", schema == credentials, schema)
    st, body = ex.api.d.json(
        "GET", f"/plugin/{ex.api.tenant}/management/tool?plugin_id={ex.plugin_id}&provider={provider}")
    c.check(f"{ex.name}: management/tool?plugin_id=&provider= returns it",
            st == 200 and body.get("code") == 0 and (body.get("data") or {}).get("provider") == provider,
            json.dumps(body)[:300])
    return decl


# ============================================================================================ google_search


def section_google(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"1. google_search (tools) [{mode}]: google_search, report, credentials, runtime parameters")
    ex = Example(c, api, tmp, os.path.join(bindir, "google_search"), "google_search", f"{AUTHOR}/google", mode,
                 os.path.join(pkgdir, "google_search.difypkg"))
    try:
        if not ex.start(lambda e: frames(e.validate("google", {"serpapi_api_key": "serp-probe"}))):
            c.fail("google_search: the tool checks cannot run: the example is not registered")
            return
        decl = check_tool_listing(ex, "google", ["google_search", "report"],
                                  [("serpapi_api_key", "secret-input", True)])
        tools = {t["identity"]["name"]: t for t in (decl or {}).get("tools") or []}
        gs = tools.get("google_search") or {}
        c.check("google_search: tool google_search's parameters query (llm, required) and num (form, default 3)",
                [(p.get("name"), p.get("form"), p.get("required"), p.get("default")) for p in gs.get("parameters") or []]
                == [("query", "llm", True, None), ("num", "form", False, 3)], gs.get("parameters"))
        c.check("google_search: tool report's output_schema kept",
                ((tools.get("report") or {}).get("output_schema") or {}).get("properties", {}).keys()
                == {"summary", "count"}, (tools.get("report") or {}).get("output_schema"))

        good = {"serpapi_api_key": "serp-conformance"}
        sse = ex.tool("google", "google_search", {"query": "dify plugins", "num": 2}, good)
        got = frames(sse)
        want = {"query": "dify plugins", "organic_results": [
            {"title": "Dify", "link": "https://dify.ai", "snippet": "Dify is an open-source platform for LLM apps."},
            {"title": "Dify plugins", "link": "https://docs.dify.ai/plugins",
             "snippet": "Plugins extend Dify with tools, endpoints and models."}]}
        c.check("google_search: dispatch/tool/invoke google_search relays one json message with the two results",
                got is not None and len(got) == 1 and got[0].get("type") == "json"
                and (got[0].get("message") or {}).get("json_object") == want, sse)
        c.check("google_search: the SSE answer is text/event-stream",
                sse.headers.get("Content-Type", "").startswith("text/event-stream"), sse.headers)

        sse = ex.tool("google", "report", {"query": "dify"}, good)
        got = frames(sse) or []
        types = [f.get("type") for f in got]
        want_types = ["log", "log", "text", "variable", "variable", "variable", "link", "image",
                      "retriever_resources", "blob_chunk", "blob_chunk"]
        c.check("google_search: report relays log, log, text, 3 variables, link, image, retriever_resources, "
                "blob_chunk ×2 in order", types == want_types, f"{types} {sse}"[:1500])
        if types == want_types:
            m = [f.get("message") or {} for f in got]
            c.check("google_search: report log entries: same id, status start then success, data kept",
                    m[0].get("id") == m[1].get("id") == "search" and (m[0].get("status"), m[1].get("status"))
                    == ("start", "success") and m[0].get("data") == {"query": "dify"}
                    and m[1].get("data") == {"count": 2}, m[:2])
            c.check("google_search: report text '2 results for dify'", m[2] == {"text": "2 results for dify"}, m[2])
            c.check("google_search: report streamed variable 'summary' in two pieces, then variable count=2",
                    [(x.get("variable_name"), x.get("variable_value"), x.get("stream")) for x in m[3:6]]
                    == [("summary", "Dify; ", True), ("summary", "Dify plugins; ", True), ("count", 2, False)],
                    m[3:6])
            c.check("google_search: report link and image messages",
                    m[6] == {"text": "https://dify.ai"} and m[7] == {"text": "https://dify.ai/logo.png"}, m[6:8])
            rr = m[8].get("retriever_resources") or []
            c.check("google_search: report retriever_resources (2, positions 1 and 2, context 'dify')",
                    m[8].get("context") == "dify" and [r.get("position") for r in rr] == [1, 2]
                    and [r.get("document_name") for r in rr] == ["Dify", "Dify plugins"], m[8])
            csv = b"Dify,https://dify.ai\nDify plugins,https://docs.dify.ai/plugins\n"
            b0, b1 = m[9], m[10]
            c.check("google_search: report CSV as blob_chunks: one id, sequence 0 then an empty end chunk 1, "
                    "total_length and base64 bytes exact",
                    b0.get("id") and b0.get("id") == b1.get("id") and (b0.get("sequence"), b1.get("sequence"))
                    == (0, 1) and (b0.get("end"), b1.get("end")) == (False, True)
                    and b0.get("total_length") == len(csv) and base64.b64decode(b0.get("blob") or "") == csv
                    and b1.get("blob") == "", [b0, b1])
            c.check("google_search: blob meta (mime_type text/csv, filename results.csv) on every chunk",
                    all(f.get("meta") == {"mime_type": "text/csv", "filename": "results.csv"} for f in got[9:]),
                    [f.get("meta") for f in got[9:]])

        sse = ex.tool("google", "google_search", {"num": 1}, good)
        c.check("google_search: a missing required parameter is refused with ToolParameterValidationError",
                is_error(sse, "ToolParameterValidationError"), sse)
        sse = ex.tool("google", "no_such_tool", {}, good)
        c.check("google_search: an unknown tool is a ValueError relayed by the daemon", is_error(sse, "ValueError"), sse)
        sse = ex.tool("bing", "google_search", {"query": "x"}, good)
        c.check("google_search: an unknown provider is a ValueError", is_error(sse, "ValueError"), sse)

        sse = ex.validate("google", good)
        c.check("google_search: dispatch/tool/validate_credentials with a good key → {result: true}",
                frames(sse) == [{"result": True}], sse)
        sse = ex.validate("google", {"serpapi_api_key": "wrong"})
        c.check("google_search: a bad key → ToolProviderCredentialValidationError relayed",
                is_error(sse, "ToolProviderCredentialValidationError")
                and plugin_error(sse)[2] == "the SerpApi API key is invalid", sse)
        sse = ex.validate("google", {})
        c.check("google_search: no key at all → an error, not {result: true}",
                sse.status == 200 and sse.events and sse.events[0].get("code") == -500, sse)

        sse = ex.runtime_parameters("google", "google_search")
        got = frames(sse)
        params = (got[0] or {}).get("parameters") if got and len(got) == 1 else None
        c.check("google_search: dispatch/tool/get_runtime_parameters answers the declared parameters "
                "(re-marshalled by the daemon)",
                isinstance(params, list) and [p.get("name") for p in params] == ["query", "num"]
                and params[0].get("type") == "string" and params[0].get("label", {}).get("en_US") == "Query string",
                sse)
    finally:
        ex.stop()


# ============================================================================================ duck_tools


def section_duck(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"2. duck_tools (tool + endpoint in one plugin) [{mode}]")
    ex = Example(c, api, tmp, os.path.join(bindir, "duck_tools"), "duck_tools", f"{AUTHOR}/duck_tools", mode,
                 os.path.join(pkgdir, "duck_tools.difypkg"))
    endpoint = None
    try:
        if not ex.start(lambda e: frames(e.validate("duck", {}))):
            c.fail("duck_tools: the tool and endpoint checks cannot run: the example is not registered")
            return
        decl = check_tool_listing(ex, "duck", ["quack"], [])
        quack = ((decl or {}).get("tools") or [{}])[0]
        c.check("duck_tools: quack declares has_runtime_parameters", quack.get("has_runtime_parameters") is True,
                quack)
        full = (ex.installation or {}).get("declaration") or {}
        edecl = full.get("endpoint") or {}
        c.check("duck_tools: the installation's declaration has the endpoint group GET /pond/<int:ducks>, "
                "no settings, and plugins.tools + plugins.endpoints",
                [(e.get("method"), e.get("path")) for e in edecl.get("endpoints") or []]
                == [("GET", "/pond/<int:ducks>")] and not edecl.get("settings")
                and (full.get("plugins") or {}).get("tools") == ["provider/duck.yaml"]
                and (full.get("plugins") or {}).get("endpoints") == ["group/duck.yaml"], json.dumps(full)[:800])

        sse = ex.tool("duck", "quack", {"times": 3})
        c.check("duck_tools: dispatch/tool/invoke quack times=3 → one text message 'quack quack quack'",
                frames(sse) == [{"type": "text", "message": {"text": "quack quack quack"}, "meta": None}], sse)
        sse = ex.tool("duck", "quack", {"times": "three"})
        c.check("duck_tools: a non-numeric `times` is an error relayed by the daemon (not a panic, not a hang)",
                sse.status == 200 and len(sse.events) == 1 and sse.events[0].get("code") == -500, sse)
        sse = ex.validate("duck", {})
        c.check("duck_tools: validate_credentials for a provider without a check → {result: true}",
                frames(sse) == [{"result": True}], sse)
        sse = ex.validate("goose", {})
        c.check("duck_tools: validate_credentials for an unknown provider → ValueError", is_error(sse, "ValueError"),
                sse)
        sse = ex.runtime_parameters("duck", "quack")
        got = frames(sse)
        params = (got[0] or {}).get("parameters") if got and len(got) == 1 else None
        c.check("duck_tools: get_runtime_parameters quack → [times: number, llm, required]",
                isinstance(params, list) and [(p.get("name"), p.get("type"), p.get("form"), p.get("required"))
                                              for p in params] == [("times", "number", "llm", True)], sse)

        body, endpoint = ex.setup_endpoint("pond", {})
        if not c.check("duck_tools: endpoint/setup accepted and endpoint/list/plugin shows the new endpoint with a "
                       "hook id", endpoint and endpoint.get("hook_id") and body.get("data") is True,
                       json.dumps(body)[:400]):
            c.fail("duck_tools: the /e/ checks cannot run without an endpoint")
            return
        hook = endpoint["hook_id"]
        c.check("duck_tools: the endpoint is enabled and bound to this plugin",
                endpoint.get("enabled") is True and endpoint.get("plugin_id") == ex.plugin_id, endpoint)
        st, hdrs, payload, _ = api.http("GET", f"/e/{hook}/pond/7")
        c.check("duck_tools: GET /e/<hook>/pond/7 → 200 text/plain '7 ducks in the pond'",
                st == 200 and hdrs.get("content-type") == "text/plain; charset=utf-8"
                and payload == b"7 ducks in the pond", (st, hdrs, payload))
        st, _, payload, _ = api.http("GET", f"/e/{hook}/pond/many")
        c.check("duck_tools: GET /e/<hook>/pond/many (not an int) → 404 from the plugin", st == 404
                and payload == b"Not Found", (st, payload))
        st, hdrs, _, _ = api.http("POST", f"/e/{hook}/pond/7", body=b"{}")
        c.check("duck_tools: POST /e/<hook>/pond/7 → 405 with Allow: GET", st == 405 and hdrs.get("allow") == "GET",
                (st, hdrs))
        st, _, _, _ = api.http("GET", f"/e/{uuid.uuid4().hex}/pond/7")
        c.check("duck_tools: an unknown hook id → 404 from the daemon", st == 404, st)
    finally:
        if endpoint:
            ex.remove_endpoint(endpoint)
        ex.stop()


# ============================================================================================ neko


def section_neko(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"3. neko (endpoints) [{mode}]: settings, streamed body, the request as the plugin sees it")
    ex = Example(c, api, tmp, os.path.join(bindir, "neko"), "neko", f"{AUTHOR}/neko", mode,
                 os.path.join(pkgdir, "neko.difypkg"))
    endpoint = None
    try:
        if not ex.start():
            c.fail("neko: the endpoint checks cannot run: the example is not registered")
            return
        full = (ex.installation or {}).get("declaration") or {}
        edecl = full.get("endpoint") or {}
        c.check("neko: the installation's declaration has GET /duck/<app_id>, POST /echo and the greeting setting",
                [(e.get("method"), e.get("path")) for e in edecl.get("endpoints") or []]
                == [("GET", "/duck/<app_id>"), ("POST", "/echo")]
                and [(s.get("name"), s.get("type"), s.get("required")) for s in edecl.get("settings") or []]
                == [("greeting", "text-input", False)], json.dumps(edecl)[:600])
        c.check("neko: no tool provider listed for it (management/tools)", ex.api.tool_provider(ex.plugin_id) is None)

        st, body = ex.api.endpoint_call("setup", {"plugin_unique_identifier": ex.uid, "user_id": USER,
                                                  "settings": {"greeting": 5}, "name": "bad"})
        c.check("neko: endpoint/setup with a non-string text-input setting is refused by the daemon",
                body.get("code") not in (0, None) and "failed to validate settings" in json.dumps(body), (st, body))
        body, endpoint = ex.setup_endpoint("neko", {"greeting": "meow"})
        if not c.check("neko: endpoint/setup with settings {greeting: meow} accepted, listed with a hook id",
                       endpoint and endpoint.get("hook_id") and body.get("data") is True, json.dumps(body)[:400]):
            c.fail("neko: the /e/ checks cannot run without an endpoint")
            return
        hook = endpoint["hook_id"]
        if ex.mode == "package":
            c.check("neko: the installed plugin answers through the daemon (its binary started)",
                    wait_until(lambda: api.http("GET", f"/e/{hook}/duck/probe")[0] == 200, 60), "no answer within 60 s")
        c.check("neko: the listed endpoint carries its settings", endpoint.get("settings") == {"greeting": "meow"},
                endpoint.get("settings"))

        st, hdrs, payload, chunks = api.http("GET", f"/e/{hook}/duck/app-42")
        c.check("neko: GET /e/<hook>/duck/app-42 → 200 text/html 'app-42 <br>meow <br>bye'",
                st == 200 and hdrs.get("content-type") == "text/html" and payload == b"app-42 <br>meow <br>bye",
                (st, hdrs, payload))
        c.check("neko: the body is streamed (chunked, no Content-Length, the pieces as separate HTTP chunks)",
                chunks is not None and "content-length" not in hdrs and len([x for x in chunks if x]) >= 2,
                (hdrs, chunks))

        req = json.dumps({"a": 1, "list": [1, 2, "x"]}).encode()
        st, hdrs, payload, _ = api.http("POST", f"/e/{hook}/echo?q=hello+world",
                                        [("Content-Type", "application/json"), ("X-Forwarded-For", "10.9.8.7")], req)
        try:
            echoed = json.loads(payload)
        except ValueError:
            echoed = None
        c.check("neko: POST /e/<hook>/echo?q=… → 200 application/json", st == 200
                and hdrs.get("content-type") == "application/json" and isinstance(echoed, dict), (st, hdrs, payload))
        if isinstance(echoed, dict):
            c.check("neko: the plugin saw method POST, path /echo (after /e/<hook>), query q decoded",
                    (echoed.get("method"), echoed.get("path"), echoed.get("query")) == ("POST", "/echo", "hello world"),
                    echoed)
            c.check("neko: the plugin saw Dify-Hook-Id = the hook id (added by the daemon)",
                    echoed.get("hook") == hook, echoed)
            c.check("neko: the plugin saw the endpoint's setting greeting=meow and the JSON body",
                    echoed.get("greeting") == "meow" and echoed.get("body") == {"a": 1, "list": [1, 2, "x"]}, echoed)
        big = {"blob": "x" * (1_200_000)}
        st, hdrs, payload, chunks = api.http("POST", f"/e/{hook}/echo", [("Content-Type", "application/json")],
                                             json.dumps(big).encode())
        try:
            echoed = json.loads(payload)
        except ValueError:
            echoed = None
        c.check("neko: a 1.2 MB body echoed back (an answer over 1 MiB, so sent in two result chunks) arrives whole",
                st == 200 and isinstance(echoed, dict) and echoed.get("body") == big,
                (st, hdrs, len(payload), len(chunks or []), payload[:200]))
        st, _, payload, _ = api.http("POST", f"/e/{hook}/echo", [("Content-Type", "text/plain")], b"not json")
        c.check("neko: a handler error (body not JSON) → 500 from the plugin with its message",
                st == 500 and payload.startswith(b"the body is not JSON"), (st, payload))
        st, hdrs, _, _ = api.http("GET", f"/e/{hook}/echo")
        c.check("neko: GET /e/<hook>/echo → 405 Allow: POST", st == 405 and hdrs.get("allow") == "POST", (st, hdrs))
        st, _, payload, _ = api.http("PUT", f"/e/{hook}/nowhere", body=b"x")
        c.check("neko: PUT /e/<hook>/nowhere → 404 Not Found from the plugin", st == 404 and payload == b"Not Found",
                (st, payload))

        st, body = ex.api.endpoint_call("disable", {"endpoint_id": endpoint["id"]})
        c.check("neko: endpoint/disable", st == 200 and body.get("code") == 0, body)
        st, _, _, _ = api.http("GET", f"/e/{hook}/duck/x")
        c.check("neko: a disabled endpoint → 404 from the daemon", st == 404, st)
        st, body = ex.api.endpoint_call("enable", {"endpoint_id": endpoint["id"]})
        st2, _, payload, _ = api.http("GET", f"/e/{hook}/duck/x")
        c.check("neko: endpoint/enable → served again", body.get("code") == 0 and st2 == 200
                and payload == b"x <br>meow <br>bye", (body, st2, payload))
    finally:
        if endpoint:
            ex.remove_endpoint(endpoint)
        ex.stop()


# ============================================================================================ echo_trigger


def section_echo(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"4. echo_trigger (trigger on the typed layer) [{mode}]: dispatch, invoke, token, node filter, errors")
    ex = Example(c, api, tmp, os.path.join(bindir, "echo_trigger"), "echo_trigger", f"{AUTHOR}/echo_trigger", mode,
                 os.path.join(pkgdir, "echo_trigger.difypkg"))
    sub = {"endpoint": "https://dify.test/triggers/plugin/echo-1", "expires_at": -1, "parameters": {},
           "properties": {}}
    raw = (b"POST /triggers/plugin/echo-1?x=1 HTTP/1.1\r\nHost: dify.test\r\nContent-Type: application/json\r\n"
           b"\r\n{\"hello\":\"world\"}")

    def dispatch(subscription: dict, request: bytes, provider: str = "echo"):
        return api.d.dispatch("trigger/dispatch_event", ex.plugin_id, {
            "provider": provider, "subscription": subscription, "raw_http_request": request.hex(), "credentials": {},
            "credential_type": "unauthorized"}, user_id="", timeout=30)

    def invoke(payload: dict, parameters: dict):
        return api.d.dispatch("trigger/invoke_event", ex.plugin_id, {
            "provider": "echo", "event": "ping", "subscription": sub, "raw_http_request": raw.hex(),
            "parameters": parameters, "payload": payload, "credentials": {}, "credential_type": "unauthorized"},
            user_id=USER, timeout=30)

    try:
        if not ex.start(lambda e: sse_chunk(dispatch(sub, raw))):
            c.fail("echo_trigger: the trigger checks cannot run: the example is not installed")
            return
        st, body = api.d.json("GET", f"/plugin/{api.tenant}/management/triggers?page=1&page_size=256")
        entry = next((i for i in (body.get("data") or []) if i.get("plugin_id") == ex.plugin_id), None)
        decl = (entry or {}).get("declaration") or {}
        c.check("echo_trigger: management/triggers lists provider echo with the event ping and the optional "
                "secret-input token",
                entry and entry.get("provider") == "echo"
                and [e.get("identity", {}).get("name") for e in decl.get("events") or []] == ["ping"]
                and [(s.get("name"), s.get("type"), s.get("required")) for s in decl.get("subscription_schema") or []]
                == [("token", "secret-input", False)], json.dumps(entry)[:800])

        chunk = sse_chunk(dispatch(sub, raw))
        ping = {"method": "POST", "path": "/triggers/plugin/echo-1?x=1", "body": '{"hello":"world"}'}
        c.check("echo_trigger: dispatch_event → events [ping], the payload (method, path, body), user_id ''",
                chunk and chunk.get("events") == ["ping"] and chunk.get("payload") == ping
                and chunk.get("user_id") == "", chunk)
        response = bytes.fromhex((chunk or {}).get("response") or "")
        c.check("echo_trigger: the sender's answer is 200 ok with an exact Content-Length",
                response == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", response)

        chunk = sse_chunk(invoke(ping, {}))
        c.check("echo_trigger: invoke_event ping → the payload as variables, not cancelled",
                chunk == {"variables": ping, "cancelled": False}, chunk)
        chunk = sse_chunk(invoke(ping, {"method": "GET"}))
        c.check("echo_trigger: a node keeping only GET → cancelled, variables {}",
                chunk == {"variables": {}, "cancelled": True}, chunk)

        guarded = dict(sub, properties={"token": "t0k"})
        chunk = sse_chunk(dispatch(guarded, raw))
        refused = bytes.fromhex((chunk or {}).get("response") or "")
        c.check("echo_trigger: a subscription with a token: a request without X-Echo-Token fires nothing, 401",
                chunk and chunk.get("events") == [] and refused.startswith(b"HTTP/1.1 401 "), (chunk, refused[:80]))
        with_token = raw.replace(b"Host: dify.test\r\n", b"Host: dify.test\r\nX-Echo-Token: t0k\r\n")
        chunk = sse_chunk(dispatch(guarded, with_token))
        c.check("echo_trigger: … and with the token it fires ping", chunk and chunk.get("events") == ["ping"], chunk)

        sse = dispatch(sub, raw, provider="github")
        c.check("echo_trigger: a dispatch naming another provider → ValueError relayed by the daemon",
                is_error(sse, "ValueError"), sse)
        sse = api.d.dispatch("trigger/subscribe", ex.plugin_id, {
            "provider": "echo", "endpoint": "https://dify.test/triggers/plugin/echo-2", "parameters": {},
            "credentials": {}, "credential_type": "api-key"}, user_id=USER, timeout=30)
        c.check("echo_trigger: subscribe (no subscription constructor) → NotImplementedError",
                is_error(sse, "NotImplementedError"), sse)
        sse = dispatch(sub, b"not an http request")
        chunk = sse_chunk(sse)
        c.check("echo_trigger: a raw request that is not HTTP → 400 to the sender, nothing fires (not a panic)",
                chunk and chunk.get("events") == [] and bytes.fromhex(chunk.get("response", "")).startswith(
                    b"HTTP/1.1 400 "), sse)
    finally:
        ex.stop()


# ============================================================================================ hello-tool


def section_hello(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"5. hello-tool (the crate README's walkthrough: cargo new to a tool the daemon runs) [{mode}]")
    binary = os.path.join(os.path.dirname(bindir), "hello-tool")
    ex = Example(c, api, tmp, binary, "hello-tool", "me/hello_tool", mode, os.path.join(pkgdir, "hello-tool.difypkg"))
    try:
        if not ex.start(lambda e: frames(e.tool("hello", "greet", {"name": "probe"}))):
            c.fail("hello-tool: the walkthrough's checks cannot run: the plugin is not installed")
            return
        check_tool_listing(ex, "hello", ["greet"], [], author="me")
        sse = ex.tool("hello", "greet", {"name": "Ada"})
        c.check("hello-tool: dispatch/tool/invoke greet name=Ada → one text message 'Hello, Ada!'",
                frames(sse) == [{"type": "text", "message": {"text": "Hello, Ada!"}, "meta": None}], sse)
        sse = ex.tool("hello", "greet", {})
        c.check("hello-tool: greet without its required name → ToolParameterValidationError before the handler runs",
                is_error(sse, "ToolParameterValidationError"), sse)
    finally:
        ex.stop()


# ============================================================================================ main


def main() -> int:
    c = Checks()
    bindir = os.environ.get("OT_EXAMPLES_DIR") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "examples")
    pkgdir = os.environ.get("OT_EXAMPLE_PACKAGES") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "conformance-examples")
    env = load_env()
    api = Api(env)
    st, _ = api.d.json("GET", "/health/check")
    if not c.check("daemon answers /health/check", st == 200, st):
        return finish(c)
    tmp = tempfile.mkdtemp(prefix="ot-conformance-examples-")
    t_all = time.time()
    try:
        sections = (("google_search", section_google), ("duck_tools", section_duck), ("neko", section_neko),
                    ("echo_trigger", section_echo), ("hello-tool", section_hello))
        for mode in ("remote", "package"):
            for title, fn in sections:
                t0 = time.time()
                try:
                    fn(c, api, tmp, bindir, mode, pkgdir)
                except Exception:  # noqa: BLE001
                    c.fail(f"{title} [{mode}]: raised", traceback.format_exc())
                finally:
                    print(f"       ({title} [{mode}]: {time.time() - t0:.1f} s)", flush=True)
    finally:
        if os.environ.get("OT_KEEP_TMP") == "1" or c.failed:
            print(f"\nexample logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal {time.time() - t_all:.1f} s")
    return finish(c)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("0 passed, 1 failed")
        sys.exit(1)
