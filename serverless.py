"""The serverless contract (Dify Cloud; the Marketplace's install test) as a real Flask app in front
of the native binary.

Dify's serverless runtime starts `python -m main` with INSTALL_METHOD=serverless (or aws_lambda) and
talks HTTP to it: POST /invoke carries one request envelope and streams back that session's
messages, one JSON line each, ending with the session's end; GET /health answers OK. The native
binary serves exactly that itself (dify_plugin::serverless). This module starts it on a private
loopback port and serves the public address with a Flask app on waitress (a production WSGI
server), passing each /invoke body through and streaming the binary's answer back unchanged, so the
HTTP server people and checks see is that Flask app. Like the Python SDK (which serves its Flask app
on gevent), it prints Flask's banner lines itself, once it listens.

Settings, as the Python SDK reads them: SERVERLESS_HOST / SERVERLESS_PORT (or AWS_LAMBDA_HOST /
AWS_LAMBDA_PORT), default 0.0.0.0:8080; MAX_REQUEST_TIMEOUT (seconds one answer may stay silent,
default 300).
"""

import os
import signal
import socket
import subprocess
import sys
import time

import requests
import waitress
from flask import Flask, Response, request

INVOKE_BODY_LIMIT = 16 * 1024 * 1024
STARTUP_TIMEOUT = 15.0


def setting(*names, default):
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return default


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent():
    """In the child, before exec: get SIGTERM when this process dies, however it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_core(binary):
    """Starts the binary's own serverless transport on 127.0.0.1; returns (process, base URL)."""
    port = free_loopback_port()
    env = dict(os.environ, INSTALL_METHOD="serverless", SERVERLESS_HOST="127.0.0.1", SERVERLESS_PORT=str(port))
    core = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    base = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if core.poll() is not None:
            sys.exit("openai-trigger serverless: the native binary exited with status %s at start" % core.returncode)
        try:
            if requests.get(base + "/health", timeout=1).text == "OK":
                return core, base
        except requests.RequestException:
            time.sleep(0.05)
    core.terminate()
    sys.exit("openai-trigger serverless: the native binary did not answer %s/health within %d s" % (base, STARTUP_TIMEOUT))


def make_app(base, idle_timeout):
    app = Flask("openai_trigger")
    session = requests.Session()

    @app.post("/invoke")
    def invoke():
        if (request.content_length or 0) > INVOKE_BODY_LIMIT:
            return {"errorType": "PayloadTooLarge", "errorMessage": "request body over 16 MiB"}, 413
        body = request.get_data(cache=False)
        try:
            upstream = session.post(
                base + "/invoke",
                data=body,
                headers={"Content-Type": "application/json"},
                stream=True,
                timeout=(5, idle_timeout),
            )
        except requests.RequestException as err:
            # 502 is what Dify's serverless runtime retries.
            return {"errorType": "PluginUnavailable", "errorMessage": "the native binary did not answer: %s" % type(err).__name__}, 502

        def relay():
            try:
                for chunk in upstream.iter_content(chunk_size=None):
                    yield chunk
            except requests.RequestException:
                return
            finally:
                upstream.close()

        return Response(relay(), status=upstream.status_code, content_type=upstream.headers.get("Content-Type"))

    @app.get("/health")
    def health():
        try:
            ok = session.get(base + "/health", timeout=2).text == "OK"
        except requests.RequestException:
            ok = False
        return ("OK", 200) if ok else ("the native binary is not answering", 503)

    return app


def serve(binary):
    host = setting("SERVERLESS_HOST", "AWS_LAMBDA_HOST", default="0.0.0.0")
    port = int(setting("SERVERLESS_PORT", "AWS_LAMBDA_PORT", default="8080"))
    idle_timeout = float(setting("MAX_REQUEST_TIMEOUT", default="300"))
    core, base = start_core(binary)

    def stop(signum, frame):
        core.terminate()
        try:
            core.wait(timeout=10)
        except subprocess.TimeoutExpired:
            core.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app = make_app(base, idle_timeout)
    server = waitress.create_server(app, host=host, port=port, threads=16, channel_timeout=idle_timeout + 30)
    print(" * Serving Flask app '%s'" % app.name, flush=True)
    print(" * Running on http://%s:%d (waitress %s; the native binary on %s)" % (host, port, waitress_version(), base), flush=True)
    server.run()


def waitress_version():
    try:
        from importlib.metadata import version

        return version("waitress")
    except Exception:  # noqa: BLE001 (only for the banner)
        return "?"
