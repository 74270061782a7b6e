#!/usr/bin/env python3
"""Conformance test of the Rust SDK's example plugins (crates/dify-plugin/examples) against the REAL Dify plugin
daemon, over remote debugging and installed as packages (issue #19: "each runs … registered over remote debugging,
installed as a package, and driven through the daemon's own dispatch routes for its kind"). Every section runs twice:
[remote] (the binary registers itself) and [package] (the .difypkg dify-plugin-package wrote, uploaded and installed;
the daemon builds its venv and runs main.py, which execs the bundled binary).

Expects `bash tests/conformance/services.sh start` (reads its env file through dify_daemon.load_env; services.sh also
runs the fake Dify inner API, fake_inner_api.py, that answers the daemon's backwards invocations) and the built
examples (`cargo build --release -p dify-plugin --examples`: target/release/examples/{google_search,duck_tools,neko,
echo_trigger,openai_compat,function_calling,site_crawl}, or $OT_EXAMPLES_DIR), the mock OpenAI API
(target/release/openai-mock, or $OT_MOCK_BINARY) and the examples' packages (run.sh's package-examples step:
target/conformance-examples/<name>.difypkg, or $OT_EXAMPLE_PACKAGES). Python 3 stdlib only; talks to loopback only.

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
    separate HTTP chunks, the request as the plugin saw it, 404/405, a handler error), disable/enable, remove;
  - models (openai_compat, against the openai-mock binary started here, passed as credentials.endpoint_url):
    management/models, …/model/validate_provider_credentials and …/validate_model_credentials (good and bad key),
    …/llm/invoke (streamed, not streamed, with tools), …/llm/num_tokens, …/text_embedding/{invoke,num_tokens},
    …/rerank/invoke, …/tts/invoke, …/tts/model/voices, …/speech2text/invoke, …/moderation/invoke, …/model/schema
    (customizable and predefined), and the Invoke*Error mapping (429, 503, 401, connection refused);
  - agent strategies (function_calling): management/agent_strategies, …/agent_strategy/invoke with a model config and
    one ToolEntity; its backwards llm and tool calls reach the fake Dify inner API (fake_inner_api.py, run by
    services.sh), which scripts the model and the tool and records what the daemon forwarded (GET /_fake/requests);
  - datasources (site_crawl): management/datasources, …/datasource/validate_credentials, …/datasource/
    get_website_crawl against a 3-page site served here on 127.0.0.1 (plus an off-site link that must not be
    followed), …/datasource/online_drive_browse_files with max_keys 0 (the daemon's request validation: HTTP 400).
Each example is stopped after its section; the daemon must then uninstall it.

Endpoint settings of type secret-input need the Dify inner API (`invoke/encrypt`); the fake one answers it with the
settings unchanged. Neither endpoint example declares one (calldify EncryptRequired skips the call then).

Knobs: OT_EXAMPLES_DIR (directory of the example binaries), OT_MOCK_BINARY (the openai-mock binary),
OT_KEEP_TMP=1 (keep the examples' stderr logs), OT_ONLY=<section,…> (run only these sections: google_search,
duck_tools, neko, echo_trigger, hello-tool, openai_compat, function_calling, site_crawl; e.g.
OT_ONLY=openai_compat,site_crawl), OT_MODES=<mode,…> (remote and/or package; default both, e.g. OT_MODES=remote).
A partial run (OT_ONLY or OT_MODES) is for local work only; run.sh runs everything.
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
    Checks, MockOpenAi, PluginProcess, clean_env, finish, package_checksum, plugin_error, sse_chunk, wait_until)

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


# ============================================================================================ helpers of the new kinds


MOCK_KEY = "sk-test-mock-full-access-0123456789abcdef"  # crates/openai-mock: VALID_KEY
USAGE_KEYS = {"prompt_tokens", "prompt_unit_price", "prompt_price_unit", "prompt_price", "completion_tokens",
              "completion_unit_price", "completion_price_unit", "completion_price", "total_tokens", "total_price",
              "currency", "latency"}
EMBEDDING_USAGE_KEYS = {"tokens", "total_tokens", "unit_price", "price_unit", "total_price", "currency", "latency"}


def inner_error(sse) -> dict:
    """The plugin's own error object ({message, error_type, args}) inside a relayed -500 frame, or {}."""
    try:
        outer = json.loads((sse.events[0] if sse.events else {}).get("message") or "{}")
        return json.loads(outer.get("message") or "{}")
    except (ValueError, AttributeError):
        return {}


def ends_in_error(sse) -> tuple[str, str]:
    """For a stream that may report progress before failing: success frames, then one -500 frame last. Returns the
    plugin's (error_type, message) from that frame, or ("", "") when the stream has another shape."""
    ev = sse.events
    if sse.status != 200 or not ev or ev[-1].get("code") != -500 or any(e.get("code") != 0 for e in ev[:-1]):
        return "", ""
    try:
        inner = json.loads(json.loads(ev[-1].get("message") or "{}").get("message") or "{}")
    except (ValueError, AttributeError):
        return "", ""
    return inner.get("error_type", ""), inner.get("message", "")


def close(a, b, tol: float = 1e-9) -> bool:
    try:
        return abs(float(a) - float(b)) <= tol
    except (TypeError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def management(api: Api, what: str) -> list:
    st, body = api.d.json("GET", f"/plugin/{api.tenant}/management/{what}?page=1&page_size=256")
    if st != 200 or body.get("code") != 0:
        raise RuntimeError(f"management/{what}: HTTP {st} {body}")
    return body.get("data") or []


def mock_binary() -> str:
    return os.environ.get("OT_MOCK_BINARY") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "openai-mock")


class FakeInnerApi:
    """The fake Dify inner API services.sh runs (fake_inner_api.py): what the daemon forwarded of a plugin's
    backwards invocations, and what the fake answered."""

    def __init__(self, env: dict):
        self.url = env.get("DIFY_FAKE_INNER_API_URL", "")

    def _call(self, method: str, path: str):
        import urllib.request
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def available(self) -> bool:
        try:
            return bool(self.url) and self._call("GET", "/_fake/health").get("ok") is True
        except Exception:  # noqa: BLE001
            return False

    def requests(self) -> list:
        return self._call("GET", "/_fake/requests")

    def reset(self) -> None:
        self._call("POST", "/_fake/reset")


# ============================================================================================ openai_compat


def section_openai_compat(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"6. openai_compat (model provider) [{mode}]: credentials, llm (stream, tools), embeddings, rerank, "
              "tts, speech2text, moderation, schemas, errors — against the mock OpenAI-compatible API")
    ex = Example(c, api, tmp, os.path.join(bindir, "openai_compat"), "openai_compat", f"{AUTHOR}/openai_compat",
                 mode, os.path.join(pkgdir, "openai_compat.difypkg"))
    if not c.check(f"openai_compat: the mock OpenAI API binary exists: {mock_binary()}",
                   os.access(mock_binary(), os.X_OK), "cargo build --release -p openai-mock (or set OT_MOCK_BINARY)"):
        return
    mock = MockOpenAi(mock_binary(), tmp)
    base = mock.base_url
    good = {"api_key": MOCK_KEY, "endpoint_url": base}
    pid = ex.plugin_id

    def call(route: str, data: dict):
        return api.dispatch(route, pid, data)

    def model_call(route: str, model: str, model_type: str, extra: dict, creds: dict | None = None,
                   provider: str = "openai_compat"):
        data = {"provider": provider, "model": model, "model_type": model_type,
                "credentials": good if creds is None else creds}
        data.update(extra)
        return call(route, data)

    def llm(model: str, messages: list, *, tools=None, stream=True, params=None, creds=None, provider="openai_compat"):
        return model_call("llm/invoke", model, "llm", {
            "model_parameters": params or {}, "prompt_messages": messages, "tools": tools or [], "stop": [],
            "stream": stream}, creds, provider)

    def last_mock(method: str, path: str):
        hits = [r for r in mock.requests() if r.get("method") == method and r.get("path") == path]
        if not hits:
            return None, {}
        try:
            return hits[-1], json.loads(hits[-1].get("body") or "null") or {}
        except ValueError:
            return hits[-1], {}

    def validate_provider(creds: dict):
        return call("model/validate_provider_credentials", {"provider": "openai_compat", "credentials": creds})

    try:
        if not ex.start(lambda e: frames(validate_provider(good))):
            c.fail("openai_compat: the model checks cannot run: the example is not installed")
            return
        # -- the daemon's management listing of model providers
        entry = next((m for m in management(api, "models") if m.get("plugin_id") == pid), None)
        decl = (entry or {}).get("declaration") or {}
        c.check("openai_compat: management/models lists provider openai_compat with this uid",
                entry and entry.get("provider") == "openai_compat" and entry.get("plugin_unique_identifier") == ex.uid,
                json.dumps(entry)[:600])
        c.check("openai_compat: its declaration: 6 model types, predefined + customizable, the 7 predefined models",
                sorted(decl.get("supported_model_types") or []) == sorted(
                    ["llm", "text-embedding", "rerank", "tts", "speech2text", "moderation"])
                and decl.get("configurate_methods") == ["predefined-model", "customizable-model"]
                and sorted(m.get("model") for m in decl.get("models") or []) == sorted(
                    ["gpt-4o-mini", "gpt-4.1-nano", "text-embedding-3-small", "rerank-lite", "tts-1", "whisper-1",
                     "omni-moderation-latest"]), json.dumps(decl)[:1200])
        c.check("openai_compat: provider and model credential schemas as declared",
                [f.get("variable") for f in ((decl.get("provider_credential_schema") or {})
                                             .get("credential_form_schemas") or [])] == ["api_key", "endpoint_url"]
                and [f.get("variable") for f in ((decl.get("model_credential_schema") or {})
                                                 .get("credential_form_schemas") or [])]
                == ["api_key", "endpoint_url", "context_size", "function_calling"], json.dumps(decl)[:1500])
        c.check("openai_compat: icon_small stored as an asset (the daemon remapped its name)",
                icon_remapped(((decl.get("icon_small") or {}).get("en_US"))), decl.get("icon_small"))

        # -- provider credentials
        mock.clear()
        sse = validate_provider({"api_key": MOCK_KEY, "endpoint_url": base + "/"})
        got = frames(sse)
        c.check("openai_compat: validate_provider_credentials with the good key → one chunk {result: true, "
                "credentials with endpoint_url normalised (trailing / trimmed)}",
                got and len(got) == 1 and got[0].get("result") is True
                and (got[0].get("credentials") or {}).get("endpoint_url") == base
                and (got[0].get("credentials") or {}).get("api_key") == MOCK_KEY, sse)
        req, _ = last_mock("GET", "/v1/models")
        c.check("openai_compat: … it asked GET {endpoint_url}/models with Authorization: Bearer <key>",
                req and (req.get("headers") or {}).get("authorization") == f"Bearer {MOCK_KEY}", req)
        bad_key = "sk-wrong-key-for-the-conformance-run-0000"
        sse = validate_provider({"api_key": bad_key, "endpoint_url": base})
        c.check("openai_compat: a bad key → CredentialsValidateFailedError relayed by the daemon, the key not in it",
                is_error(sse, "CredentialsValidateFailedError") and bad_key not in json.dumps(sse.events), sse)

        # -- llm, streamed
        messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello dify plugins"}]
        mock.clear()
        sse = llm("gpt-4o-mini", messages, params={"temperature": 0.2, "max_tokens": 64})
        got = frames(sse) or []
        text = "".join(((f.get("delta") or {}).get("message") or {}).get("content") or "" for f in got
                       if isinstance(((f.get("delta") or {}).get("message") or {}).get("content"), str))
        c.check("openai_compat: llm/invoke stream:true → ≥2 frames whose text concatenates to the mock's "
                "'Echo: hello dify plugins'", len(got) >= 2 and text == "Echo: hello dify plugins",
                f"{len(got)} frames, text {text!r}: {sse}")
        c.check("openai_compat: … every frame model gpt-4o-mini, role assistant, content a string (never null)",
                got and all(f.get("model") == "gpt-4o-mini"
                            and ((f.get("delta") or {}).get("message") or {}).get("role") == "assistant"
                            and isinstance(((f.get("delta") or {}).get("message") or {}).get("content"), str)
                            for f in got), got)
        last = (got[-1].get("delta") or {}) if got else {}
        u = last.get("usage") or {}
        c.check("openai_compat: … the last frame has finish_reason stop and usage with every field",
                last.get("finish_reason") == "stop" and set(u) >= USAGE_KEYS, last)
        c.check("openai_compat: … usage: the mock's tokens (prompt 6, completion 4, total 10), gpt-4o-mini's pricing "
                "(0.15 / 0.60 per unit 0.000001, USD), total_price = prompt + completion",
                (u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens")) == (6, 4, 10)
                and close(u.get("prompt_unit_price"), 0.15) and close(u.get("completion_unit_price"), 0.6)
                and close(u.get("prompt_price_unit"), 0.000001) and u.get("currency") == "USD"
                and close(u.get("total_price"),
                          float(u.get("prompt_price") or 0) + float(u.get("completion_price") or 0))
                and close(u.get("total_price"), 6 * 0.15e-6 + 4 * 0.6e-6, 2e-7), u)
        c.check("openai_compat: … only the last frame carries usage",
                all((f.get("delta") or {}).get("usage") is None for f in got[:-1]), [f.get("delta") for f in got])
        req, body = last_mock("POST", "/v1/chat/completions")
        c.check("openai_compat: … the mock got POST chat/completions: model, the messages, stream with "
                "stream_options.include_usage, temperature and max_tokens, no tools, Bearer key",
                req and body.get("model") == "gpt-4o-mini" and body.get("stream") is True
                and (body.get("stream_options") or {}).get("include_usage") is True
                and [(m.get("role"), m.get("content")) for m in body.get("messages") or []]
                == [("system", "You are terse."), ("user", "hello dify plugins")]
                and body.get("temperature") == 0.2 and body.get("max_tokens") == 64 and not body.get("tools")
                and (req.get("headers") or {}).get("authorization") == f"Bearer {MOCK_KEY}", body)

        sse = llm("gpt-4o-mini", messages, stream=False)
        got = frames(sse) or []
        d = (got[0].get("delta") or {}) if len(got) == 1 else {}
        c.check("openai_compat: llm/invoke stream:false → one frame with the whole message, usage and finish_reason",
                len(got) == 1 and (d.get("message") or {}).get("content") == "Echo: hello dify plugins"
                and set(d.get("usage") or {}) >= USAGE_KEYS and d.get("finish_reason") == "stop", sse)

        # -- llm with tools
        tools = [{"name": "get_weather", "description": "The weather of a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
        mock.clear()
        sse = llm("gpt-4o-mini", [{"role": "user", "content": "weather in Paris"}], tools=tools)
        got = frames(sse) or []
        calls = [tc for f in got for tc in (((f.get("delta") or {}).get("message") or {}).get("tool_calls") or [])]
        args = None
        try:
            args = json.loads((calls[0].get("function") or {}).get("arguments") or "null") if len(calls) == 1 else None
        except ValueError:
            pass
        c.check("openai_compat: llm/invoke with tools → a frame with the complete tool call (call_mock_1, "
                "get_weather, arguments {query: 'weather in Paris'})",
                len(calls) == 1 and calls[0].get("id") == "call_mock_1" and calls[0].get("type") == "function"
                and (calls[0].get("function") or {}).get("name") == "get_weather"
                and args == {"query": "weather in Paris"}, sse)
        c.check("openai_compat: … the last frame: finish_reason tool_calls, full usage; contents all strings",
                got and (got[-1].get("delta") or {}).get("finish_reason") == "tool_calls"
                and set((got[-1].get("delta") or {}).get("usage") or {}) >= USAGE_KEYS
                and all(isinstance(((f.get("delta") or {}).get("message") or {}).get("content"), str) for f in got),
                got[-1:] if got else sse)
        _, body = last_mock("POST", "/v1/chat/completions")
        c.check("openai_compat: … the mock got tools as [{type: function, function: {name, description, parameters}}]",
                body.get("tools") == [{"type": "function", "function": tools[0]}], body.get("tools"))

        # -- num tokens
        sse = model_call("llm/num_tokens", "gpt-4o-mini", "llm", {"prompt_messages": messages, "tools": []})
        c.check("openai_compat: llm/num_tokens → the estimate 3+ceil(14/4) + 3+ceil(18/4) = 15",
                frames(sse) == [{"num_tokens": 15}], sse)
        sse_t = model_call("llm/num_tokens", "gpt-4o-mini", "llm", {"prompt_messages": messages, "tools": tools})
        c.check("openai_compat: … with a tool the estimate grows by ceil(chars of the tools' JSON / 4)",
                (frames(sse_t) or [{}])[0].get("num_tokens", 0) > 15, sse_t)

        # -- text embedding
        texts = ["alpha", "beta gamma", "delta"]
        mock.clear()
        sse = model_call("text_embedding/invoke", "text-embedding-3-small", "text-embedding",
                         {"texts": texts, "input_type": "document"})
        got = frames(sse) or []
        emb = (got[0] if len(got) == 1 else {}).get("embeddings") or []
        eu = (got[0] if len(got) == 1 else {}).get("usage") or {}
        c.check("openai_compat: text_embedding/invoke with 3 texts → one frame with 3 vectors of 8 floats, unit length",
                len(got) == 1 and len(emb) == 3 and all(len(v) == 8 for v in emb)
                and all(close(sum(x * x for x in v), 1.0, 1e-6) for v in emb), sse)
        c.check("openai_compat: … model and usage with every field (tokens 4 = the mock's words, USD)",
                len(got) == 1 and got[0].get("model") == "text-embedding-3-small" and set(eu) >= EMBEDDING_USAGE_KEYS
                and eu.get("tokens") == 4 and eu.get("currency") == "USD", got[0] if got else sse)
        _, body = last_mock("POST", "/v1/embeddings")
        c.check("openai_compat: … the mock got POST embeddings {model, input: texts, encoding_format: float}",
                body.get("model") == "text-embedding-3-small" and body.get("input") == texts
                and body.get("encoding_format") == "float", body)
        sse = model_call("text_embedding/num_tokens", "text-embedding-3-small", "text-embedding",
                         {"texts": ["abcd", "abcde", "x" * 9]})
        c.check("openai_compat: text_embedding/num_tokens → [ceil(chars/4)] per text = [1, 2, 3]",
                frames(sse) == [{"num_tokens": [1, 2, 3]}], sse)

        # -- rerank
        docs = ["A plugin for Dify", "Nothing relevant here", "Dify docs"]
        mock.clear()
        sse = model_call("rerank/invoke", "rerank-lite", "rerank",
                         {"query": "dify plugin", "docs": docs, "score_threshold": 0, "top_n": 0})
        got = frames(sse) or []
        rd = (got[0] if len(got) == 1 else {}).get("docs") or []
        c.check("openai_compat: rerank/invoke → one frame, docs sorted by score desc (index 0 → 1.0, 2 → 0.5, 1 → 0.0) "
                "with their texts", len(got) == 1 and [d.get("index") for d in rd] == [0, 2, 1]
                and [d.get("text") for d in rd] == [docs[0], docs[2], docs[1]]
                and [round(float(d.get("score")), 3) for d in rd] == [1.0, 0.5, 0.0]
                and got[0].get("model") == "rerank-lite", sse)
        _, body = last_mock("POST", "/v1/rerank")
        c.check("openai_compat: … the mock got POST rerank {model, query, documents}, top_n omitted when 0",
                body.get("model") == "rerank-lite" and body.get("query") == "dify plugin"
                and body.get("documents") == docs and "top_n" not in body, body)
        sse = model_call("rerank/invoke", "rerank-lite", "rerank",
                         {"query": "dify plugin", "docs": docs, "score_threshold": 0.4, "top_n": 2})
        got = frames(sse) or []
        c.check("openai_compat: rerank with score_threshold 0.4 and top_n 2 → docs 0 and 2 only",
                len(got) == 1 and [d.get("index") for d in got[0].get("docs") or []] == [0, 2], sse)

        # -- tts
        words = " ".join(f"word{i}" for i in range(100))
        mock.clear()
        sse = model_call("tts/invoke", "tts-1", "tts", {"content_text": words, "voice": "alloy",
                                                        "tenant_id": api.tenant})
        got = frames(sse) or []
        pieces = []
        try:
            pieces = [bytes.fromhex(f.get("result") or "") for f in got]
        except ValueError:
            pass
        audio = b"".join(pieces)
        c.check("openai_compat: tts/invoke (100 words) → ≥2 hex chunks (≤32 KiB each, mime_type audio/mpeg) that "
                "concatenate to the mock's 100 MPEG frames of 417 bytes, each starting FF FB",
                len(got) >= 2 and all(f.get("mime_type") == "audio/mpeg" for f in got)
                and all(0 < len(p) <= 32768 for p in pieces) and len(audio) == 100 * 417
                and all(audio[i:i + 2] == b"\xff\xfb" for i in range(0, len(audio), 417)),
                f"{len(got)} frames, sizes {[len(p) for p in pieces]}, head {audio[:4].hex()}")
        _, body = last_mock("POST", "/v1/audio/speech")
        c.check("openai_compat: … the mock got POST audio/speech {model, input, voice, response_format: mp3}",
                body.get("model") == "tts-1" and body.get("input") == words and body.get("voice") == "alloy"
                and body.get("response_format") == "mp3", body)
        sse = model_call("tts/model/voices", "tts-1", "tts", {})
        c.check("openai_compat: tts/model/voices → Alloy/alloy and Echo/echo",
                frames(sse) == [{"voices": [{"name": "Alloy", "value": "alloy"}, {"name": "Echo", "value": "echo"}]}],
                sse)
        sse = model_call("tts/model/voices", "tts-1", "tts", {"language": "fr-FR"})
        c.check("openai_compat: tts/model/voices language fr-FR → Alloy only",
                frames(sse) == [{"voices": [{"name": "Alloy", "value": "alloy"}]}], sse)

        # -- speech2text, moderation
        sse = model_call("speech2text/invoke", "whisper-1", "speech2text", {"file": (bytes(range(256)) * 4).hex()})
        c.check("openai_compat: speech2text/invoke (1024 bytes of audio, hex) → {result: '1024 bytes of audio'} from "
                "the mock's multipart transcription", frames(sse) == [{"result": "1024 bytes of audio"}], sse)
        req, _ = last_mock("POST", "/v1/audio/transcriptions")
        c.check("openai_compat: … sent as multipart/form-data",
                req and (req.get("headers") or {}).get("content-type", "").startswith("multipart/form-data"), req)
        sse = model_call("moderation/invoke", "omni-moderation-latest", "moderation",
                         {"text": "I will kill this process"})
        c.check("openai_compat: moderation/invoke of a text with 'kill' → {result: true} (flagged)",
                frames(sse) == [{"result": True}], sse)
        sse = model_call("moderation/invoke", "omni-moderation-latest", "moderation", {"text": "Have a lovely day"})
        c.check("openai_compat: moderation/invoke of a harmless text → {result: false}",
                frames(sse) == [{"result": False}], sse)

        # -- model credentials
        mock.clear()
        sse = model_call("model/validate_model_credentials", "gpt-4o-mini", "llm", {})
        got = frames(sse)
        c.check("openai_compat: model/validate_model_credentials (llm) → {result: true, credentials}",
                got and len(got) == 1 and got[0].get("result") is True
                and (got[0].get("credentials") or {}).get("endpoint_url") == base, sse)
        _, body = last_mock("POST", "/v1/chat/completions")
        c.check("openai_compat: … by a chat completion: one user message 'ping', max_tokens 5, stream false",
                [(m.get("role"), m.get("content")) for m in body.get("messages") or []] == [("user", "ping")]
                and body.get("max_tokens") == 5 and body.get("stream") in (False, None)
                and body.get("model") == "gpt-4o-mini", body)
        sse = model_call("model/validate_model_credentials", "text-embedding-3-small", "text-embedding", {})
        _, body = last_mock("POST", "/v1/embeddings")
        c.check("openai_compat: … (text-embedding) {result: true}, by POST embeddings ['ping']",
                (frames(sse) or [{}])[0].get("result") is True and body.get("input") == ["ping"], (sse, body))
        sse = model_call("model/validate_model_credentials", "gpt-4o-mini", "llm", {},
                         creds={"api_key": bad_key, "endpoint_url": base})
        c.check("openai_compat: … a bad key → CredentialsValidateFailedError",
                is_error(sse, "CredentialsValidateFailedError"), sse)

        # -- model schemas
        custom = {"api_key": MOCK_KEY, "endpoint_url": base, "context_size": "8192", "function_calling": "yes"}
        sse = model_call("model/schema", "my-local-llm", "llm", {}, creds=custom)
        got = frames(sse) or []
        ms = (got[0] if len(got) == 1 else {}).get("model_schema") or {}
        c.check("openai_compat: model/schema for a customizable llm → its schema built from the credentials "
                "(accepted by the daemon's validation)",
                ms.get("model") == "my-local-llm" and (ms.get("label") or {}).get("en_US") == "my-local-llm"
                and ms.get("model_type") == "llm" and ms.get("fetch_from") == "customizable-model"
                and (ms.get("model_properties") or {}).get("mode") == "chat"
                and (ms.get("model_properties") or {}).get("context_size") == 8192
                and sorted(ms.get("features") or []) == sorted(["tool-call", "multi-tool-call", "stream-tool-call"])
                and [r.get("name") for r in ms.get("parameter_rules") or []] == ["temperature", "top_p", "max_tokens"],
                sse)
        sse = model_call("model/schema", "my-local-llm", "llm", {}, creds=dict(custom, function_calling="no"))
        ms = ((frames(sse) or [{}])[0] or {}).get("model_schema") or {}
        c.check("openai_compat: … function_calling 'no' → no features", ms.get("features") in ([], None), sse)
        sse = model_call("model/schema", "gpt-4o-mini", "llm", {})
        got = frames(sse) or []
        ms = (got[0] if len(got) == 1 else {}).get("model_schema") or {}
        c.check("openai_compat: model/schema for the predefined gpt-4o-mini → its declaration (context 128000, "
                "4 parameter rules, USD pricing)",
                ms.get("model") == "gpt-4o-mini" and (ms.get("model_properties") or {}).get("context_size") == 128000
                and [r.get("name") for r in ms.get("parameter_rules") or []]
                == ["temperature", "top_p", "max_tokens", "response_format"]
                and (ms.get("pricing") or {}).get("currency") == "USD", sse)
        sse = model_call("model/schema", "my-embedder", "text-embedding", {}, creds=custom)
        c.check("openai_compat: model/schema for a customizable text-embedding model → {model_schema: null}",
                frames(sse) == [{"model_schema": None}], sse)

        # -- errors
        sse = llm("mock-rate-limited", [{"role": "user", "content": "hi"}])
        err = inner_error(sse)
        c.check("openai_compat: a rate-limited model (429) → InvokeRateLimitError with args.description",
                is_error(sse, "InvokeRateLimitError") and ((err.get("args") or {}).get("description") or ""), sse)
        sse = llm("mock-unavailable", [{"role": "user", "content": "hi"}])
        c.check("openai_compat: a 503 → InvokeServerUnavailableError", is_error(sse, "InvokeServerUnavailableError"),
                sse)
        sse = llm("gpt-4o-mini", [{"role": "user", "content": "hi"}], creds={"api_key": bad_key, "endpoint_url": base})
        c.check("openai_compat: a bad key on llm/invoke → InvokeAuthorizationError, the key not in it",
                is_error(sse, "InvokeAuthorizationError") and bad_key not in json.dumps(sse.events), sse)
        sse = llm("gpt-4o-mini", [{"role": "user", "content": "hi"}],
                  creds={"api_key": MOCK_KEY, "endpoint_url": f"http://127.0.0.1:{free_port()}/v1"})
        c.check("openai_compat: an endpoint where nothing listens → InvokeConnectionError",
                is_error(sse, "InvokeConnectionError"), sse)
        sse = llm("gpt-4o-mini", [{"role": "user", "content": "hi"}], provider="not_a_provider")
        c.check("openai_compat: an unknown provider → ValueError 'Provider `not_a_provider` not found'",
                is_error(sse, "ValueError") and "not_a_provider" in plugin_error(sse)[2], sse)
    finally:
        ex.stop()
        mock.stop()


# ============================================================================================ function_calling


def tool_entity() -> dict:
    """One ToolEntity as the Dify API fills an array[tools] parameter (plugin-kinds.md §5.2)."""
    return {
        "identity": {"author": "langgenius", "name": "google_search", "label": {"en_US": "Google Search"},
                     "provider": "langgenius/google/google"},
        "parameters": [
            {"name": "query", "label": {"en_US": "Query"}, "human_description": {"en_US": "The query"},
             "type": "string", "form": "llm", "llm_description": "What to search the web for", "required": True},
            {"name": "num", "label": {"en_US": "Results"}, "human_description": {"en_US": "How many results"},
             "type": "number", "form": "form", "required": False, "default": 3},
        ],
        "description": {"human": {"en_US": "Search the web"}, "llm": "Searches the web for a query"},
        "output_schema": None,
        "has_runtime_parameters": False,
        "provider_type": "builtin",
        "credential_id": "cred-google-1",
        "runtime_parameters": {"num": 2},
    }


def section_function_calling(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"7. function_calling (agent strategy) [{mode}]: rounds of backwards llm + tool calls through the "
              "daemon and the fake Dify inner API")
    ex = Example(c, api, tmp, os.path.join(bindir, "function_calling"), "function_calling",
                 f"{AUTHOR}/function_calling_agent", mode, os.path.join(pkgdir, "function_calling.difypkg"))
    inner = FakeInnerApi(api.env)
    if not c.check("function_calling: the fake Dify inner API answers (services.sh starts it; "
                   "DIFY_FAKE_INNER_API_URL in the env file)", inner.available(), inner.url or "not in the env file"):
        return
    model = {"provider": "langgenius/openai_compat/openai_compat", "model": "gpt-4o-mini", "model_type": "llm",
             "mode": "chat", "completion_params": {"temperature": 0.1},
             "history_prompt_messages": [{"role": "user", "content": "earlier question"},
                                         {"role": "assistant", "content": "earlier answer"}]}
    params = {"model": model, "tools": [tool_entity()], "instruction": "You are a research assistant.",
              "query": "latest dify release", "maximum_iterations": 3}

    def invoke(strategy: str = "function_calling", p: dict | None = None):
        return api.dispatch("agent_strategy/invoke", ex.plugin_id, {
            "agent_strategy_provider": "agent", "agent_strategy": strategy,
            "agent_strategy_params": params if p is None else p})

    try:
        if not ex.start(lambda e: is_error(invoke("no_such_strategy"), "ValueError")):
            c.fail("function_calling: the agent checks cannot run: the example is not installed")
            return
        entry = next((m for m in management(api, "agent_strategies") if m.get("plugin_id") == ex.plugin_id), None)
        decl = (entry or {}).get("declaration") or {}
        strategies = decl.get("strategies") or []
        c.check("function_calling: management/agent_strategies lists provider agent with the strategy "
                "function_calling and its 5 parameters",
                entry and entry.get("provider") == "agent" and entry.get("plugin_unique_identifier") == ex.uid
                and [s.get("identity", {}).get("name") for s in strategies] == ["function_calling"]
                and [p.get("name") for p in strategies[0].get("parameters") or []]
                == ["model", "tools", "instruction", "query", "maximum_iterations"], json.dumps(entry)[:800])
        st, body = api.d.json("GET", f"/plugin/{api.tenant}/management/agent_strategy?plugin_id={ex.plugin_id}"
                                     "&provider=agent")
        c.check("function_calling: management/agent_strategy?plugin_id=&provider=agent returns it",
                st == 200 and body.get("code") == 0 and (body.get("data") or {}).get("provider") == "agent",
                json.dumps(body)[:300])

        inner.reset()
        sse = invoke()
        got = frames(sse) or []
        types = [f.get("type") for f in got]
        c.check("function_calling: agent_strategy/invoke → a success stream of log, text and json messages",
                got and {"log", "text", "json"} <= set(types), f"{types} {sse}"[:1500])
        observation = 'google_search says: ' + json.dumps({"num": 2, "query": "latest dify release"}, sort_keys=True)
        texts = [(f.get("message") or {}).get("text") or "" for f in got if f.get("type") == "text"]
        c.check("function_calling: the text messages stream the model's answer ('Final answer: ' + the tool's "
                "observation) in ≥2 pieces", len([t for t in texts if t]) >= 2
                and "".join(texts) == "Final answer: " + observation, texts)
        c.check("function_calling: the last message is json {execution_metadata: {total_tokens, total_price, "
                "currency}}", got and got[-1].get("type") == "json"
                and set(((got[-1].get("message") or {}).get("json_object") or {}).get("execution_metadata") or {})
                >= {"total_tokens", "total_price", "currency"}, got[-1:] if got else sse)
        logs = [f.get("message") or {} for f in got if f.get("type") == "log"]
        by_label = {}
        for m in logs:
            by_label.setdefault(m.get("label"), []).append(m)
        c.check("function_calling: log messages ROUND 1, ROUND 2, 'gpt-4o-mini Thought' and 'CALL google_search', "
                "each started then finished (success) under the same id",
                all(lbl in by_label for lbl in ("ROUND 1", "ROUND 2", "gpt-4o-mini Thought", "CALL google_search"))
                and all({m.get("id") for m in by_label[lbl] if m.get("status") == "start"}
                        == {m.get("id") for m in by_label[lbl] if m.get("status") == "success"} != {None}
                        and [m.get("status") for m in by_label[lbl]][:1] == ["start"]
                        for lbl in ("ROUND 1", "ROUND 2", "gpt-4o-mini Thought", "CALL google_search")),
                [(m.get("label"), m.get("status"), m.get("id"), m.get("parent_id")) for m in logs])
        rounds = {m.get("id") for lbl in ("ROUND 1", "ROUND 2") for m in by_label.get(lbl, [])}
        c.check("function_calling: the model and tool logs are children of a round log (parent_id)",
                logs and all(m.get("parent_id") in rounds
                             for lbl in ("gpt-4o-mini Thought", "CALL google_search") for m in by_label.get(lbl, [])),
                [(m.get("label"), m.get("id"), m.get("parent_id")) for m in logs])
        thoughts = [m.get("data") or {} for m in by_label.get("gpt-4o-mini Thought", [])
                    if m.get("status") == "success"]
        c.check("function_calling: the model logs finish with {output, tool_calls}: round 1 the call to google_search, "
                "round 2 the answer and no calls",
                len(thoughts) == 2 and [((tc.get("function") or {}).get("name") or tc.get("name"))
                                        for tc in thoughts[0].get("tool_calls") or []] == ["google_search"]
                and thoughts[1].get("output") == "Final answer: " + observation and not thoughts[1].get("tool_calls"),
                thoughts)
        call_done = [m for m in by_label.get("CALL google_search", []) if m.get("status") == "success"]
        c.check("function_calling: the tool call's log finishes with {output: <observation>}",
                call_done and (call_done[-1].get("data") or {}).get("output") == observation, call_done)

        recorded = inner.requests()
        paths = [r.get("path") for r in recorded]
        c.check("function_calling: the fake inner API got, with the inner API key: invoke/llm, invoke/tool, "
                "invoke/llm (in that order)",
                paths == ["/inner/api/invoke/llm", "/inner/api/invoke/tool", "/inner/api/invoke/llm"]
                and all(r.get("authorized") for r in recorded),
                [(r.get("path"), r.get("authorized")) for r in recorded])
        if paths == ["/inner/api/invoke/llm", "/inner/api/invoke/tool", "/inner/api/invoke/llm"]:
            llm1, tool, llm2 = (r.get("body") or {} for r in recorded)
            c.check("function_calling: invoke/llm #1: tenant, user, type llm, the model config (provider, model, mode "
                    "chat, completion_params), stream true",
                    llm1.get("tenant_id") == api.tenant and llm1.get("user_id") == USER and llm1.get("type") == "llm"
                    and llm1.get("provider") == model["provider"] and llm1.get("model") == "gpt-4o-mini"
                    and llm1.get("mode") == "chat" and llm1.get("completion_params") == {"temperature": 0.1}
                    and llm1.get("stream") is True, {k: v for k, v in llm1.items() if k != "prompt_messages"})
            ltools = llm1.get("tools") or []
            props = ((ltools[0].get("parameters") or {}).get("properties") or {}) if len(ltools) == 1 else {}
            c.check("function_calling: … the tool definition: name google_search, description.llm, a JSON Schema with "
                    "only the form=llm parameter (query, required)",
                    len(ltools) == 1 and ltools[0].get("name") == "google_search"
                    and ltools[0].get("description") == "Searches the web for a query" and list(props) == ["query"]
                    and (props.get("query") or {}).get("type") == "string"
                    and (ltools[0].get("parameters") or {}).get("required") == ["query"], ltools)
            c.check("function_calling: … prompt messages: system(instruction), the history, user(query)",
                    [(m.get("role"), m.get("content")) for m in llm1.get("prompt_messages") or []]
                    == [("system", "You are a research assistant."), ("user", "earlier question"),
                        ("assistant", "earlier answer"), ("user", "latest dify release")],
                    llm1.get("prompt_messages"))
            c.check("function_calling: invoke/tool: tool_type builtin, provider, tool, the call's arguments + the "
                    "runtime parameters, credential_id",
                    tool.get("tool_type") == "builtin" and tool.get("provider") == "langgenius/google/google"
                    and tool.get("tool") == "google_search"
                    and tool.get("tool_parameters") == {"query": "latest dify release", "num": 2}
                    and tool.get("credential_id") == "cred-google-1" and tool.get("tenant_id") == api.tenant, tool)
            pm = llm2.get("prompt_messages") or []
            c.check("function_calling: invoke/llm #2: the history plus the assistant's tool call and the tool "
                    "message (tool_call_id call_fake_1, the observation)",
                    len(pm) == 6 and pm[:4] == (llm1.get("prompt_messages") or [])[:4]
                    and pm[4].get("role") == "assistant"
                    and [tc.get("id") for tc in pm[4].get("tool_calls") or []] == ["call_fake_1"]
                    and pm[5].get("role") == "tool" and pm[5].get("tool_call_id") == "call_fake_1"
                    and pm[5].get("content") == observation, pm)
            total = sum(((a.get("delta") or {}).get("usage") or {}).get("total_tokens") or 0
                        for r in recorded if r.get("path") == "/inner/api/invoke/llm" for a in r.get("answer") or [])
            meta = (((got[-1].get("message") or {}).get("json_object") or {}).get("execution_metadata") or {}) \
                if got else {}
            c.check(f"function_calling: execution_metadata.total_tokens = the usage of both model calls ({total}), USD",
                    meta.get("total_tokens") == total and meta.get("currency") == "USD", meta)

        sse = invoke(p={k: v for k, v in params.items() if k != "query"})
        c.check("function_calling: without `query` → ToolParameterValidationError naming the parameter (checked against the "
                "declaration before the strategy runs)",
                is_error(sse, "ToolParameterValidationError") and "query" in plugin_error(sse)[2], sse)
        sse = invoke(p={k: v for k, v in params.items() if k != "model"})
        c.check("function_calling: without `model` → ToolParameterValidationError naming the parameter (checked against the "
                "declaration before the strategy runs)",
                is_error(sse, "ToolParameterValidationError") and "model" in plugin_error(sse)[2], sse)
        sse = invoke("no_such_strategy")
        c.check("function_calling: an unknown strategy → ValueError 'Agent strategy `no_such_strategy` not found'",
                is_error(sse, "ValueError") and "no_such_strategy" in plugin_error(sse)[2], sse)
    finally:
        ex.stop()


# ============================================================================================ site_crawl


class Site:
    """A small website on 127.0.0.1 for the crawler: 3 linked HTML pages behind a bearer token, and links to a
    second server (another port: off-site) that must never be fetched."""

    TOKEN = "crawl-conformance-token"

    def __init__(self, offsite_url: str = ""):
        import http.server
        import threading
        site = self
        self.hits: list = []  # (path, authorization)
        self.pages = {
            "/": ("<html><head><title>Site home</title><meta name=\"description\" content=\"The start page\"></head>"
                  "<body><h1>Welcome</h1><p>Start\n   here.</p><a href=\"/about.html\">About</a> "
                  "<a href=\"guide/intro.html\">Guide</a> <a href=\"/about.html#team\">Team</a> "
                  f"<a href=\"{offsite_url}secret.html\">Elsewhere</a></body></html>"),
            "/about.html": ("<html><head><title>About us</title><meta name=\"description\" content=\"Who we are\">"
                            "</head><body><p>We build <b>plugins</b>.</p><a href=\"/\">Home</a></body></html>"),
            "/guide/intro.html": ("<html><head><title>Guide intro</title><meta name=\"description\" "
                                  "content=\"How to start\"></head><body><p>Step one.</p>"
                                  "<a href=\"../about.html\">About</a></body></html>"),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                site.hits.append((self.path, self.headers.get("Authorization")))
                page = site.pages.get(self.path.split("?")[0])
                if self.headers.get("Authorization") != f"Bearer {Site.TOKEN}":
                    status, body, ctype = 401, b"unauthorized", "text/plain"
                elif page is None:
                    status, body, ctype = 404, b"not found", "text/plain"
                else:
                    status, body, ctype = 200, page.encode(), "text/html; charset=utf-8"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def section_site_crawl(c: Checks, api: Api, tmp: str, bindir: str, mode: str, pkgdir: str) -> None:
    c.section(f"8. site_crawl (website-crawl datasource) [{mode}]: credentials, a crawl with progress, limits, "
              "request validation")
    ex = Example(c, api, tmp, os.path.join(bindir, "site_crawl"), "site_crawl", f"{AUTHOR}/site_crawl", mode,
                 os.path.join(pkgdir, "site_crawl.difypkg"))
    offsite = Site()
    site = Site(offsite.url)
    creds = {"access_token": Site.TOKEN}

    def validate(credentials: dict):
        return api.dispatch("datasource/validate_credentials", ex.plugin_id,
                            {"provider": "site_crawl", "credentials": credentials})

    def crawl(params: dict, credentials: dict | None = None):
        return api.dispatch("datasource/get_website_crawl", ex.plugin_id, {
            "provider": "site_crawl", "datasource": "crawl",
            "credentials": creds if credentials is None else credentials, "datasource_parameters": params})

    try:
        if not ex.start(lambda e: frames(validate(creds))):
            c.fail("site_crawl: the datasource checks cannot run: the example is not installed")
            return
        entry = next((m for m in management(api, "datasources") if m.get("plugin_id") == ex.plugin_id), None)
        decl = (entry or {}).get("declaration") or {}
        c.check("site_crawl: management/datasources lists provider site_crawl (website_crawl) with the datasource "
                "crawl and the required secret access_token",
                entry and entry.get("provider") == "site_crawl" and entry.get("plugin_unique_identifier") == ex.uid
                and decl.get("provider_type") == "website_crawl"
                and [d.get("identity", {}).get("name") for d in decl.get("datasources") or []] == ["crawl"]
                and [(s.get("name"), s.get("type"), s.get("required")) for s in decl.get("credentials_schema") or []]
                == [("access_token", "secret-input", True)], json.dumps(entry)[:900])
        st, body = api.d.json("GET", f"/plugin/{api.tenant}/management/datasource?plugin_id={ex.plugin_id}"
                                     "&provider=site_crawl")
        c.check("site_crawl: management/datasource?plugin_id=&provider=site_crawl returns it",
                st == 200 and body.get("code") == 0 and (body.get("data") or {}).get("provider") == "site_crawl",
                json.dumps(body)[:300])

        sse = validate(creds)
        c.check("site_crawl: datasource/validate_credentials with a crawl-… token → {result: true}",
                frames(sse) == [{"result": True}], sse)
        sse = validate({"access_token": "nope"})
        c.check("site_crawl: a token not starting with crawl- → ToolProviderCredentialValidationError",
                is_error(sse, "ToolProviderCredentialValidationError"), sse)

        site.hits.clear()
        sse = crawl({"url": site.url, "limit": 10})
        got = frames(sse) or []
        results = [f.get("result") or {} for f in got]
        c.check("site_crawl: get_website_crawl → ≥2 frames, the first {status: processing, web_info_list: [], "
                "total: 1, completed: 0}",
                len(got) >= 2 and results[0] == {"status": "processing", "web_info_list": [], "total": 1,
                                                 "completed": 0}, sse)
        c.check("site_crawl: … processing snapshots in between (empty web_info_list, completed growing)",
                all(r.get("status") == "processing" and r.get("web_info_list") == [] for r in results[:-1])
                and [r.get("completed") for r in results[:-1]] == sorted(r.get("completed") for r in results[:-1]),
                [(r.get("status"), r.get("total"), r.get("completed")) for r in results])
        last = results[-1] if results else {}
        info = {w.get("source_url"): w for w in last.get("web_info_list") or []}
        want = {site.url: ("Site home", "The start page"), site.url + "about.html": ("About us", "Who we are"),
                site.url + "guide/intro.html": ("Guide intro", "How to start")}
        c.check("site_crawl: … the last frame: completed, total 3, completed 3, the 3 pages (source_url, title, "
                "description)",
                last.get("status") == "completed" and last.get("total") == 3 and last.get("completed") == 3
                and {u: (w.get("title"), w.get("description")) for u, w in info.items()} == want, last)
        home, about = (info.get(site.url) or {}).get("content") or "", \
            (info.get(site.url + "about.html") or {}).get("content") or ""
        c.check("site_crawl: … content is the page text, tags stripped and whitespace collapsed",
                "Welcome" in home and "Start here." in home and "We build plugins." in about
                and "<" not in home + about, (home, about))
        c.check("site_crawl: the off-site link (another port) was never fetched", offsite.hits == [], offsite.hits)
        c.check("site_crawl: every page fetched once, with Authorization: Bearer <access_token>",
                sorted(p for p, _ in site.hits) == ["/", "/about.html", "/guide/intro.html"]
                and all(a == f"Bearer {Site.TOKEN}" for _, a in site.hits), site.hits)

        sse = crawl({"url": site.url, "limit": 2})
        got = frames(sse) or []
        last = (got[-1].get("result") or {}) if got else {}
        c.check("site_crawl: limit 2 → completed with 2 pages (the start page first), total capped at 2",
                last.get("status") == "completed" and last.get("completed") == 2 and last.get("total") == 2
                and len(last.get("web_info_list") or []) == 2
                and (last.get("web_info_list") or [{}])[0].get("source_url") == site.url, sse)
        sse = crawl({"url": "ftp://127.0.0.1/pub/"})
        c.check("site_crawl: a start URL that is not http(s) → ValueError", is_error(sse, "ValueError"), sse)
        sse = crawl({"url": site.url + "missing.html"})
        _, msg = ends_in_error(sse)
        c.check("site_crawl: a start page answering 404 → (after at most progress frames) an error naming the URL "
                "and the status", site.url + "missing.html" in msg and "404" in msg, sse)
        sse = crawl({"url": site.url}, {"access_token": "crawl-wrong-token"})
        _, msg = ends_in_error(sse)
        c.check("site_crawl: a token the site refuses → an error naming status 401", "401" in msg, sse)

        sse = api.dispatch("datasource/online_drive_browse_files", ex.plugin_id, {
            "provider": "site_crawl", "datasource": "crawl", "credentials": creds,
            "request": {"bucket": None, "prefix": "", "max_keys": 0, "next_page_parameters": None}})
        c.check("site_crawl: online_drive_browse_files with max_keys 0 → HTTP 400 from the daemon's request "
                "validation (the plugin is not asked)", sse.status == 400 and b"-400" in sse.raw,
                (sse.status, sse.raw[:300]))
    finally:
        ex.stop()
        site.stop()
        offsite.stop()


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
                    ("echo_trigger", section_echo), ("hello-tool", section_hello),
                    ("openai_compat", section_openai_compat), ("function_calling", section_function_calling),
                    ("site_crawl", section_site_crawl))
        only = [s.strip() for s in os.environ.get("OT_ONLY", "").split(",") if s.strip()]
        unknown = [s for s in only if s not in dict(sections)]
        if unknown:
            c.fail(f"OT_ONLY names unknown sections {unknown}", f"known: {[t for t, _ in sections]}")
        modes = [m.strip() for m in os.environ.get("OT_MODES", "remote,package").split(",") if m.strip()]
        if not modes or set(modes) - {"remote", "package"}:
            c.fail(f"OT_MODES must list remote and/or package, not {modes}")
        for mode in modes:
            for title, fn in sections:
                if only and title not in only:
                    continue
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
