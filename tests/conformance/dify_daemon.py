"""Stdlib-only client helpers for the real Dify plugin daemon started by services.sh.

Talks to loopback only. Used by smoke_register.py / smoke_install.py and usable by other harnesses:

    from dify_daemon import load_env, Daemon, RemotePlugin
    env = load_env()
    d = Daemon(env)
    key = d.debugging_key()
    with RemotePlugin(env, key) as p:
        p.register(manifest, "trigger_declaration", [provider], {"icon.svg": b"<svg/>"})
        ...

Everything here is derived from reading dify-plugin-daemon @ bdb5642a; see NOTES.md for the citations.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import socket
import threading
import time
import uuid
import zipfile

DEFAULT_ENV_FILE = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), "openai-trigger-conformance", "env"
)


def env_file_path() -> str:
    """$OPENAI_TRIGGER_CONFORMANCE_ENV, else the env file of the state dir services.sh uses
    ($OPENAI_TRIGGER_CONFORMANCE_DIR/env, so an isolated run never reads another run's daemon), else the default."""
    if os.environ.get("OPENAI_TRIGGER_CONFORMANCE_ENV"):
        return os.environ["OPENAI_TRIGGER_CONFORMANCE_ENV"]
    if os.environ.get("OPENAI_TRIGGER_CONFORMANCE_DIR"):
        return os.path.join(os.environ["OPENAI_TRIGGER_CONFORMANCE_DIR"], "env")
    return DEFAULT_ENV_FILE


def load_env(path: str | None = None) -> dict:
    """Read the KEY=VALUE file written by `services.sh start`; process env vars of the same name win."""
    path = path or env_file_path()
    env: dict[str, str] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip()
    for k in list(env) + [
        "DIFY_DAEMON_HTTP_HOST",
        "DIFY_DAEMON_HTTP_PORT",
        "DIFY_DAEMON_DEBUG_HOST",
        "DIFY_DAEMON_DEBUG_PORT",
        "DIFY_DAEMON_SERVER_KEY",
        "DIFY_DAEMON_TENANT_ID",
        "DIFY_DAEMON_LOG",
    ]:
        if os.environ.get(k):
            env[k] = os.environ[k]
    missing = [
        k
        for k in (
            "DIFY_DAEMON_HTTP_HOST",
            "DIFY_DAEMON_HTTP_PORT",
            "DIFY_DAEMON_DEBUG_HOST",
            "DIFY_DAEMON_DEBUG_PORT",
            "DIFY_DAEMON_SERVER_KEY",
            "DIFY_DAEMON_TENANT_ID",
        )
        if not env.get(k)
    ]
    if missing:
        raise RuntimeError(
            f"daemon env incomplete (missing {missing}); run `bash tests/conformance/services.sh start` "
            f"(env file looked up at {path})"
        )
    for k in ("DIFY_DAEMON_HTTP_HOST", "DIFY_DAEMON_DEBUG_HOST"):
        if env[k] not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"{k}={env[k]} is not loopback; tests may only talk to loopback")
    return env


# --------------------------------------------------------------------------------------------- HTTP


class SSEResult:
    """Parsed `text/event-stream` body of a daemon dispatch call."""

    def __init__(self, status: int, headers: dict, raw: bytes):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.events: list = []
        for block in raw.decode("utf-8", "replace").split("\n\n"):
            block = block.strip("\n")
            if not block:
                continue
            data_lines = [l[5:].lstrip(" ") for l in block.split("\n") if l.startswith("data:")]
            if data_lines:
                self.events.append(json.loads("\n".join(data_lines)))

    def __repr__(self) -> str:
        return f"SSEResult(status={self.status}, events={self.events!r})"


class Daemon:
    def __init__(self, env: dict, timeout: float = 30.0):
        self.env = env
        self.host = env["DIFY_DAEMON_HTTP_HOST"]
        self.port = int(env["DIFY_DAEMON_HTTP_PORT"])
        self.key = env["DIFY_DAEMON_SERVER_KEY"]
        self.tenant = env["DIFY_DAEMON_TENANT_ID"]
        self.timeout = timeout

    def _conn(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)

    def request(self, method: str, path: str, body=None, headers: dict | None = None, timeout=None):
        """Returns (status, headers, raw bytes)."""
        h = {"X-Api-Key": self.key}
        data = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            else:
                data = json.dumps(body).encode()
                # gin binding in the daemon checks this header for an exact match (controllers/base.go:16)
                h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = self._conn(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def json(self, method: str, path: str, body=None, headers=None, timeout=None):
        status, _, raw = self.request(method, path, body, headers, timeout)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"_raw": raw.decode("utf-8", "replace")}

    # -- remote debugging -------------------------------------------------------------------
    def debugging_key(self, tenant: str | None = None) -> str:
        status, body = self.json("POST", f"/plugin/{tenant or self.tenant}/debugging/key")
        if status != 200 or body.get("code") != 0:
            raise RuntimeError(f"debugging key: HTTP {status} {body}")
        return body["data"]["key"]

    # -- dispatch -----------------------------------------------------------------------------
    def dispatch(self, path_suffix: str, plugin_id: str, data: dict, user_id: str = "",
                 timeout: float = 60.0, extra: dict | None = None) -> SSEResult:
        """POST /plugin/<tenant>/dispatch/<path_suffix> (e.g. "trigger/dispatch_event")."""
        body = {"user_id": user_id, "data": data}
        body.update(extra or {})
        status, headers, raw = self.request(
            "POST",
            f"/plugin/{self.tenant}/dispatch/{path_suffix}",
            body,
            {"X-Plugin-ID": plugin_id},
            timeout=timeout,
        )
        return SSEResult(status, headers, raw)

    # -- management ---------------------------------------------------------------------------
    def list_plugins(self, page_size: int = 256):
        """(status, body); body["data"] = {"list": [installation...], "total": n} (service/manage_plugin.go:160)."""
        return self.json("GET", f"/plugin/{self.tenant}/management/list?page=1&page_size={page_size}")

    def installations(self) -> list:
        status, body = self.list_plugins()
        if status != 200 or body.get("code") != 0:
            raise RuntimeError(f"management/list: HTTP {status} {body}")
        return (body.get("data") or {}).get("list") or []

    def wait_installed(self, plugin_id: str, timeout: float = 10.0) -> dict:
        end = time.time() + timeout
        last = None
        while time.time() < end:
            last = self.installations()
            for item in last:
                if item.get("plugin_id") == plugin_id:
                    return item
            time.sleep(0.2)
        raise RuntimeError(f"plugin {plugin_id} not installed in tenant after {timeout}s: {last}")

    def upload_package(self, pkg: bytes, filename: str = "plugin.difypkg", verify_signature: bool = False):
        boundary = "----conformance" + uuid.uuid4().hex
        parts = []
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="dify_pkg"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + pkg + b"\r\n"
        )
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="verify_signature"\r\n\r\n'
            f'{"true" if verify_signature else "false"}\r\n'.encode()
        )
        parts.append(f"--{boundary}--\r\n".encode())
        status, _, raw = self.request(
            "POST",
            f"/plugin/{self.tenant}/management/install/upload/package",
            b"".join(parts),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=120,
        )
        return status, json.loads(raw)

    def install_identifiers(self, identifiers: list, source: str = "package"):
        return self.json(
            "POST",
            f"/plugin/{self.tenant}/management/install/identifiers",
            {"plugin_unique_identifiers": identifiers, "source": source, "metas": [{} for _ in identifiers]},
        )

    def task(self, task_id: str):
        return self.json("GET", f"/plugin/{self.tenant}/management/install/tasks/{task_id}")

    def wait_task(self, task_id: str, timeout: float = 600.0, poll: float = 1.0) -> dict:
        end = time.time() + timeout
        body = None
        while time.time() < end:
            status, body = self.task(task_id)
            if status == 200 and body.get("code") == 0:
                st = body["data"].get("status")
                if st in ("success", "failed"):
                    return body["data"]
            time.sleep(poll)
        raise RuntimeError(f"install task {task_id} not finished after {timeout}s: {body}")

    def uninstall(self, installation_id: str):
        return self.json(
            "POST",
            f"/plugin/{self.tenant}/management/uninstall",
            {"plugin_installation_id": installation_id},
        )


# --------------------------------------------------------------------------------------------- TCP


class RemotePlugin:
    """A hand-driven remote-debugging connection (what the SDK does with INSTALL_METHOD=remote)."""

    def __init__(self, env: dict, key: str, connect_timeout: float = 5.0):
        self.env = env
        self.key = key
        self.sock = socket.create_connection(
            (env["DIFY_DAEMON_DEBUG_HOST"], int(env["DIFY_DAEMON_DEBUG_PORT"])), timeout=connect_timeout
        )
        self.sock.settimeout(None)
        self._buf = b""
        self._lock = threading.Lock()
        self._hb_stop = threading.Event()
        self._hb_thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._hb_stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def send(self, obj) -> None:
        line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self.sock.sendall(line)

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def read_line(self, timeout: float | None) -> bytes | None:
        """Next non-empty line (without '\\n'); None on timeout; b'' on EOF."""
        end = None if timeout is None else time.time() + timeout
        while True:
            if b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.strip():
                    return line.rstrip(b"\r")
                continue
            remaining = None if end is None else end - time.time()
            if remaining is not None and remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            finally:
                self.sock.settimeout(None)
            if not chunk:
                if self._buf.strip():
                    line, self._buf = self._buf, b""
                    return line
                return b""
            self._buf += chunk

    @staticmethod
    def registration_messages(manifest: dict, kind: str, declarations: list, assets: dict,
                              key: str, chunk: int = 8192) -> list:
        """handshake, manifest_declaration, <kind>, asset_chunk*, end — in that order (daemon-protocol.md §6.3)."""
        msgs = [
            {"type": "handshake", "data": {"key": key}},
            {"type": "manifest_declaration", "data": manifest},
            {"type": kind, "data": declarations},
        ]
        for name, blob in assets.items():
            for i in range(0, max(len(blob), 1), chunk):
                msgs.append({"type": "asset_chunk", "data": {
                    "filename": name,
                    "data": base64.b64encode(blob[i : i + chunk]).decode(),
                    "end": i + chunk >= len(blob),
                }})
        msgs.append({"type": "end", "data": {}})
        return msgs

    def register(self, manifest: dict, kind: str, declarations: list, assets: dict[str, bytes],
                 chunk: int = 8192) -> None:
        """Send the whole registration at once (success is silent: nothing comes back)."""
        for m in self.registration_messages(manifest, kind, declarations, assets, self.key, chunk):
            self.send(m)

    def register_expecting_reply(self, manifest: dict, kind: str, declarations: list, assets: dict,
                                 wait: float = 0.5) -> bytes | None:
        """Send the registration one message at a time and return the first line the daemon writes (a
        rejection closes the socket, so later writes could fail); None if it stayed silent throughout."""
        for m in self.registration_messages(manifest, kind, declarations, assets, self.key):
            try:
                self.send(m)
            except OSError:
                break
            line = self.read_line(timeout=wait)
            if line is not None:
                return line
        return self.read_line(timeout=wait * 4)

    def heartbeat(self) -> None:
        self.send({"event": "heartbeat", "session_id": None, "data": {}})

    def start_heartbeats(self, interval: float = 10.0) -> None:
        def loop():
            while not self._hb_stop.wait(interval):
                try:
                    self.heartbeat()
                except OSError:
                    return

        self.heartbeat()
        self._hb_thread = threading.Thread(target=loop, daemon=True)
        self._hb_thread.start()

    def reply(self, session_id: str, stream_data: dict | None = None, error: dict | None = None) -> None:
        """Answer one request: a stream chunk (or an error), then end."""
        if error is not None:
            self.send({"event": "session", "session_id": session_id, "data": {"type": "error", "data": error}})
        else:
            self.send({"event": "session", "session_id": session_id, "data": {"type": "stream", "data": stream_data}})
        self.send({"event": "session", "session_id": session_id, "data": {"type": "end", "data": {}}})


# --------------------------------------------------------------------------------------------- packages


def build_difypkg(files: dict[str, bytes]) -> bytes:
    """A .difypkg: a zip with file entries only (directory entries break the daemon's decoder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[name])
    return buf.getvalue()


def package_checksum(files: dict[str, bytes]) -> str:
    """pkg/plugin_packager/decoder/checksum.go: sha256 over sorted names of sha256(name)||sha256(content)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(hashlib.sha256(name.encode()).digest())
        h.update(hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def raw_http_request_hex(method: str, path: str, headers: list, body: bytes) -> str:
    """Build the hex-encoded raw HTTP/1.1 request the Dify API sends in raw_http_request (triggers.md §3.3)."""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return (head.encode() + body).hex()


def raw_http_response_hex(status: int, reason: str, headers: list, body: bytes) -> str:
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return (head.encode() + body).hex()
