#!/usr/bin/env python3
"""A fake Dify inner API (the Dify API's /inner/api/* routes that the plugin daemon calls for a plugin's backwards
invocations), for the conformance tests. Python 3 stdlib only; listens on 127.0.0.1 only.

    python3 tests/conformance/fake_inner_api.py --port 55091 --key <DIFY_INNER_API_KEY>
    python3 tests/conformance/fake_inner_api.py --self-test      # framing + scripted model, no daemon needed

services.sh starts it beside the daemon and points the daemon's DIFY_INNER_API_URL / DIFY_INNER_API_KEY at it.

What the daemon expects (dify-plugin-daemon @ bdb5642a):
  - every call is `POST {DIFY_INNER_API_URL}/inner/api/<path>` with the header `X-Inner-Api-Key` and a JSON body
    (internal/core/dify_invocation/calldify/http_request.go Request/StreamResponse, path.go difyPath);
  - each answer item is a BaseBackwardsInvocationResponse `{"data": <T>, "error": ""}` (calldify/types.go); a non-empty
    `error` fails the call with "request failed: <error>";
  - streamed routes (invoke/llm, invoke/tool, invoke/tts, invoke/app, invoke/llm/structured-output) are read with
    pkg/utils/parser/chunking.go LengthPrefixedChunking(magic 0x0f): per item the bytes
    0x0f, 0x00, uint16 LE header length (10), a 10-byte header whose first 4 bytes are the uint32 LE data length
    (the other 6 reserved, zero), then the data; a non-200 status fails the call with the body as the message
    (pkg/utils/http_requests/http_warpper.go RequestAndParseStream). This is what the real Dify API writes
    (api/libs/helper.py length_prefixed_response: struct.pack("<BBHI", 0x0f, 0, 0xA, len) + 6 zero bytes + data);
  - single-result routes (invoke/encrypt, ...) are one plain JSON body of the same envelope (RequestAndParse; the
    status is not checked). invoke/encrypt's T is `{"data": <settings>}`, so the body is {"data":{"data":{…}}}.

Routes answered:
  POST /inner/api/invoke/llm      stream of LLMResultChunk (a scripted model, see `llm_chunks`):
        tools given and no prompt message with role "tool" -> ONE chunk: an assistant tool call to the first tool with
        arguments {"query": <last user content>}, content "", finish_reason "tool_calls", complete usage;
        otherwise the text "Final answer: " + the last tool message's content (the last user content when there is
        no tool message), streamed one word per chunk (at least 2 chunks); the last chunk carries finish_reason
        "stop" and complete usage. Usage: prompt_tokens = whitespace words of all prompt contents, completion_tokens
        = words of the reply (1 for a tool call), unit price 0.001 per token with price_unit 1, currency USD.
  POST /inner/api/invoke/tool     stream of one ToolResponseChunk
        {"type":"text","message":{"text":"<tool> says: <json.dumps(tool_parameters, sort_keys=True)>"},"meta":null}
  POST /inner/api/invoke/encrypt  opt encrypt/decrypt -> the settings unchanged (an identity "cipher"), clear -> {}
  any other /inner/api/* path     HTTP 501 {"data":null,"error":"<path> is not implemented by the fake inner API"}
  a wrong or missing X-Inner-Api-Key -> HTTP 401 {"data":null,"error":"invalid inner api key"} (recorded too)
Test hooks (no key needed; loopback only):
  GET  /_fake/requests  -> [{"seq","path","authorized","headers":{content-type,x-inner-api-key present?},"body",
                             "answer":[data items sent]}, …] in arrival order
  POST /_fake/reset     -> forget recorded requests
  GET  /_fake/health    -> {"ok":true}
"""

from __future__ import annotations

import argparse
import io
import json
import re
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAGIC = 0x0F
HEADER_LENGTH = 0x0A
UNIT_PRICE = "0.001"
PRICE_UNIT = "1"
CURRENCY = "USD"
STREAM_DELAY = 0.02  # between streamed items, so the daemon really sees a stream


# ============================================================================================ framing


def frame(data: bytes) -> bytes:
    """One item in the daemon's length-prefixed framing (what Dify's length_prefixed_response writes)."""
    return struct.pack("<BBHI", MAGIC, 0, HEADER_LENGTH, len(data)) + b"\x00" * 6 + data


def envelope(data) -> bytes:
    return json.dumps({"data": data, "error": ""}, ensure_ascii=False).encode()


def unframe(reader, max_chunk: int = 30 * 1024 * 1024) -> list:
    """A line-by-line Python port of pkg/utils/parser/chunking.go LengthPrefixedChunking (for the self-test)."""
    out = []
    while True:
        first = reader.read(4)
        if len(first) == 0:
            return out  # io.EOF on the system header: normal end
        if len(first) < 4:
            raise ValueError("failed to read system header")
        if first[0] != MAGIC:
            raise ValueError(f"magic number mismatch: {first[0]}")
        header_length = struct.unpack("<H", first[2:4])[0]
        if header_length != 0xA:
            raise ValueError(f"header length mismatch: {header_length}")
        header = reader.read(header_length)
        if len(header) < header_length:
            raise ValueError("failed to read header")
        data_length = struct.unpack("<I", header[:4])[0]
        if data_length > max_chunk:
            raise ValueError(f"data length is too long: {data_length}")
        data = reader.read(data_length)
        if len(data) < data_length:
            raise ValueError("failed to read data")
        out.append(data)


# ============================================================================================ the scripted model


def content_text(content) -> str:
    """A prompt message's content as text: a string, or the `data` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("data") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def words(text: str) -> int:
    return len(text.split())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    """A complete LLMUsage (every field the daemon's LLMUsage requires), decimals as strings."""
    unit = float(UNIT_PRICE) * float(PRICE_UNIT)
    pp, cp = prompt_tokens * unit, completion_tokens * unit
    return {
        "prompt_tokens": prompt_tokens, "prompt_unit_price": UNIT_PRICE, "prompt_price_unit": PRICE_UNIT,
        "prompt_price": f"{pp:.7f}", "completion_tokens": completion_tokens, "completion_unit_price": UNIT_PRICE,
        "completion_price_unit": PRICE_UNIT, "completion_price": f"{cp:.7f}",
        "total_tokens": prompt_tokens + completion_tokens, "total_price": f"{pp + cp:.7f}", "currency": CURRENCY,
        "latency": 0.01,
    }


def split_words(text: str) -> list:
    """The text in pieces of one word each, every word keeping its following whitespace; at least 2 pieces."""
    pieces = re.findall(r"\S+\s*", text)
    if len(pieces) < 2:
        pieces = [text[: len(text) // 2], text[len(text) // 2:]]
    return pieces


def llm_chunks(body: dict) -> list:
    """The LLMResultChunks the scripted model answers to an invoke/llm body."""
    model = body.get("model") or "fake-model"
    messages = body.get("prompt_messages") or []
    tools = body.get("tools") or []
    prompt_tokens = sum(words(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    last_user = next((content_text(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")

    def chunk(index: int, content: str, tool_calls=None, finish=None, use=None) -> dict:
        return {"model": model, "prompt_messages": [], "system_fingerprint": "fp_fake_inner_api",
                "delta": {"index": index,
                          "message": {"role": "assistant", "content": content, "name": None,
                                      "tool_calls": tool_calls or []},
                          "usage": use, "finish_reason": finish}}

    if tools and "tool" not in roles:
        call = {"id": "call_fake_1", "type": "function",
                "function": {"name": tools[0].get("name"), "arguments": json.dumps({"query": last_user})}}
        return [chunk(0, "", [call], "tool_calls", usage(prompt_tokens, 1))]
    last_tool = next((content_text(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "tool"), None)
    text = "Final answer: " + (last_tool if last_tool is not None else last_user)
    pieces = split_words(text)
    out = [chunk(i, p) for i, p in enumerate(pieces)]
    last = out[-1]["delta"]
    last["finish_reason"] = "stop"
    last["usage"] = usage(prompt_tokens, words(text))
    return out


def tool_chunks(body: dict) -> list:
    params = body.get("tool_parameters") or {}
    text = f"{body.get('tool')} says: {json.dumps(params, sort_keys=True)}"
    return [{"type": "text", "message": {"text": text}, "meta": None}]


def encrypt_answer(body: dict) -> dict:
    opt = body.get("opt")
    data = body.get("data") or {}
    if opt == "clear":
        return {"data": {}}
    return {"data": data}


# ============================================================================================ the server


class State:
    def __init__(self, key: str):
        self.key = key
        self.lock = threading.Lock()
        self.requests: list = []
        self.seq = 0

    def record(self, entry: dict) -> dict:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.requests.append(entry)
            if len(self.requests) > 10000:  # a long run keeps the newest
                del self.requests[:1000]
        return entry


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-dify-inner-api/1"
    state: State = None  # set by serve()

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def _json(self, status: int, obj) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _stream(self, items: list, entry: dict) -> None:
        """Each item as one length-prefixed frame, sent as its own HTTP chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, item in enumerate(items):
            if i:
                time.sleep(STREAM_DELAY)
            data = frame(envelope(item))
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            self.wfile.flush()
            entry["answer"].append(item)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):
        if self.path == "/_fake/requests":
            with self.state.lock:
                snapshot = json.loads(json.dumps(self.state.requests))
            return self._json(200, snapshot)
        if self.path == "/_fake/health":
            return self._json(200, {"ok": True})
        return self._json(404, {"data": None, "error": f"GET {self.path} not found"})

    def _body(self) -> bytes:
        """The request body: Content-Length, or chunked (Go's http client sends the daemon's JSON bodies chunked:
        http_requests.buildHttpRequest sets req.Body after http.NewRequest, so ContentLength stays 0)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()  # CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self):
        raw = self._body()
        if self.path == "/_fake/reset":
            with self.state.lock:
                self.state.requests.clear()
            return self._json(200, {"ok": True})
        if not self.path.startswith("/inner/api/"):
            return self._json(404, {"data": None, "error": f"POST {self.path} not found"})
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        authorized = self.headers.get("X-Inner-Api-Key") == self.state.key
        entry = self.state.record({
            "path": self.path.split("?")[0], "authorized": authorized, "body": body, "answer": [],
            "headers": {"content-type": self.headers.get("Content-Type"),
                        "x-inner-api-key": "present" if self.headers.get("X-Inner-Api-Key") else "absent"}})
        if not authorized:
            return self._json(401, {"data": None, "error": "invalid inner api key"})
        route = entry["path"][len("/inner/api/"):].strip("/")
        body = body if isinstance(body, dict) else {}
        if route == "invoke/llm":
            return self._stream(llm_chunks(body), entry)
        if route == "invoke/tool":
            return self._stream(tool_chunks(body), entry)
        if route == "invoke/encrypt":
            answer = encrypt_answer(body)
            entry["answer"].append(answer)
            return self._json(200, {"data": answer, "error": ""})
        return self._json(501, {"data": None, "error": f"{route} is not implemented by the fake inner API"})


def serve(host: str, port: int, key: str) -> ThreadingHTTPServer:
    Handler.state = State(key)
    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


# ============================================================================================ self-test


def self_test() -> int:
    """Serve on a free port, call the routes over real HTTP and parse the streams with the Python port of
    LengthPrefixedChunking; also check the framing bytes against the daemon's layout by hand."""
    import http.client

    ok = fail = 0

    def check(name, cond, detail=""):
        nonlocal ok, fail
        if cond:
            ok += 1
            print(f"ok   - {name}")
        else:
            fail += 1
            print(f"FAIL - {name}: {detail}")

    raw = frame(b'{"a":1}')
    check("frame layout: 0f 00 0a00 <len u32 LE> 6 zero bytes, data",
          raw[:4] == b"\x0f\x00\x0a\x00" and raw[4:8] == (7).to_bytes(4, "little") and raw[8:14] == b"\0" * 6
          and raw[14:] == b'{"a":1}' and len(raw) == 21, raw.hex())
    check("unframe(frame(x)+frame(y)) == [x, y]; empty input is a normal EOF",
          unframe(io.BytesIO(frame(b"x") + frame(b"") + frame(b"yy"))) == [b"x", b"", b"yy"]
          and unframe(io.BytesIO(b"")) == [], "")
    for bad, why in ((b"\x0e" + raw[1:], "magic"), (raw[:2] + b"\x0b\x00" + raw[4:], "header length"),
                     (raw[:-1], "truncated data"), (raw[:3], "truncated header")):
        try:
            unframe(io.BytesIO(bad))
            check(f"unframe rejects a bad {why}", False, "accepted")
        except ValueError:
            check(f"unframe rejects a bad {why}", True)

    httpd = serve("127.0.0.1", 0, "k-test")
    Handler.log_message = lambda *a: None
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def post(path, body, key="k-test"):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        h = {"Content-Type": "application/json"}
        if key is not None:
            h["X-Inner-Api-Key"] = key
        c.request("POST", path, body=json.dumps(body).encode(), headers=h)
        r = c.getresponse()
        data = r.read()  # http.client undoes the chunked transfer encoding
        c.close()
        return r.status, r.getheader("Transfer-Encoding"), data

    def get(path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path)
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        return data

    usage_keys = {"prompt_tokens", "prompt_unit_price", "prompt_price_unit", "prompt_price", "completion_tokens",
                  "completion_unit_price", "completion_price_unit", "completion_price", "total_tokens",
                  "total_price", "currency", "latency"}
    tools = [{"name": "lookup", "description": "d", "parameters": {"type": "object"}}]
    first = {"tenant_id": "t", "user_id": "u", "type": "llm", "provider": "p", "model": "m", "mode": "chat",
             "prompt_messages": [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "capital of France"}],
             "tools": tools, "stop": [], "stream": True}
    st, te, data = post("/inner/api/invoke/llm", first)
    items = [json.loads(x) for x in unframe(io.BytesIO(data))]
    check("invoke/llm with tools: HTTP 200, chunked, one framed item {data, error:''}",
          st == 200 and te == "chunked" and len(items) == 1 and items[0].get("error") == "", (st, te, items))
    d = (items[0].get("data") or {}).get("delta", {}) if items else {}
    call = (d.get("message") or {}).get("tool_calls") or [{}]
    check("… a tool call to the first tool with arguments {query: last user content}, content '' (not null)",
          call[0].get("function") == {"name": "lookup", "arguments": json.dumps({"query": "capital of France"})}
          and d["message"]["content"] == "" and d.get("finish_reason") == "tool_calls", d)
    check("… complete usage (prompt 5 words, completion 1)", set(d.get("usage") or {}) == usage_keys
          and d["usage"]["prompt_tokens"] == 5 and d["usage"]["completion_tokens"] == 1, d.get("usage"))
    second = dict(first, prompt_messages=first["prompt_messages"] + [
        {"role": "assistant", "content": "", "tool_calls": call},
        {"role": "tool", "content": "Paris is the capital", "tool_call_id": "call_fake_1", "name": "lookup"}])
    st, _, data = post("/inner/api/invoke/llm", second)
    items = [json.loads(x)["data"] for x in unframe(io.BytesIO(data))]
    text = "".join(i["delta"]["message"]["content"] for i in items)
    check("invoke/llm after a tool message: ≥2 chunks concatenating to 'Final answer: <tool content>'",
          st == 200 and len(items) >= 2 and text == "Final answer: Paris is the capital", (len(items), text))
    check("… indexes 0..n-1, only the last has finish_reason stop and complete usage",
          [i["delta"]["index"] for i in items] == list(range(len(items)))
          and all(i["delta"]["usage"] is None and i["delta"]["finish_reason"] is None for i in items[:-1])
          and items[-1]["delta"]["finish_reason"] == "stop" and set(items[-1]["delta"]["usage"]) == usage_keys
          and items[-1]["delta"]["usage"]["completion_tokens"] == 6, items[-1])
    st, _, data = post("/inner/api/invoke/llm", dict(first, tools=[]))
    items = [json.loads(x)["data"] for x in unframe(io.BytesIO(data))]
    check("invoke/llm without tools: 'Final answer: <last user content>'",
          "".join(i["delta"]["message"]["content"] for i in items) == "Final answer: capital of France", items)
    st, _, data = post("/inner/api/invoke/tool", {"tool_type": "builtin", "provider": "p", "tool": "lookup",
                                                  "tool_parameters": {"query": "x", "a": 1}})
    items = [json.loads(x) for x in unframe(io.BytesIO(data))]
    check("invoke/tool: one ToolResponseChunk text '<tool> says: <sorted json of tool_parameters>'",
          st == 200 and items == [{"data": {"type": "text", "message": {"text": 'lookup says: {"a": 1, "query": "x"}'},
                                            "meta": None}, "error": ""}], items)
    st, _, data = post("/inner/api/invoke/encrypt", {"opt": "encrypt", "namespace": "endpoint", "identity": "i",
                                                     "data": {"s": "v"}, "config": []})
    check("invoke/encrypt: plain JSON {data:{data:<settings>}, error:''}",
          st == 200 and json.loads(data) == {"data": {"data": {"s": "v"}}, "error": ""}, data)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = json.dumps(dict(first, tools=[])).encode()
    c.putrequest("POST", "/inner/api/invoke/llm")
    for k, v in (("Content-Type", "application/json"), ("X-Inner-Api-Key", "k-test"), ("Transfer-Encoding", "chunked")):
        c.putheader(k, v)
    c.endheaders()
    for piece in (payload[:10], payload[10:]):
        c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    items = [json.loads(x)["data"] for x in unframe(io.BytesIO(r.read()))]
    c.request("POST", "/inner/api/invoke/tool", body=json.dumps({"tool": "t", "tool_parameters": {}}).encode(),
              headers={"X-Inner-Api-Key": "k-test"})
    r2 = c.getresponse()
    again = [json.loads(x)["data"] for x in unframe(io.BytesIO(r2.read()))]
    c.close()
    check("a chunked request body (how Go's client sends the daemon's JSON) is read whole; the kept-alive "
          "connection serves the next request",
          "".join(i["delta"]["message"]["content"] for i in items) == "Final answer: capital of France"
          and again == [{"type": "text", "message": {"text": "t says: {}"}, "meta": None}], (items, again))
    st, _, data = post("/inner/api/invoke/llm", first, key="wrong")
    check("a wrong X-Inner-Api-Key: 401 with an error envelope", st == 401 and json.loads(data)["error"], (st, data))
    st, _, data = post("/inner/api/invoke/app", {})
    check("an unimplemented route: 501 with an error envelope", st == 501 and json.loads(data)["error"], (st, data))
    recorded = get("/_fake/requests")
    check("every request recorded in order (path, authorized, body, answer)",
          [r["path"] for r in recorded] == ["/inner/api/invoke/llm"] * 3 + [
              "/inner/api/invoke/tool", "/inner/api/invoke/encrypt", "/inner/api/invoke/llm", "/inner/api/invoke/tool",
              "/inner/api/invoke/llm", "/inner/api/invoke/app"]
          and [r["authorized"] for r in recorded] == [True] * 7 + [False, True]
          and recorded[0]["body"]["tools"] == tools and len(recorded[1]["answer"]) >= 2, recorded)
    post("/_fake/reset", {}, key=None)
    check("POST /_fake/reset forgets them", get("/_fake/requests") == [])
    httpd.shutdown()
    print(f"{ok} passed, {fail} failed")
    return 0 if fail == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=55091)
    ap.add_argument("--key", default="")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        print("fake_inner_api: loopback only", file=sys.stderr)
        return 2
    if not a.key:
        print("fake_inner_api: --key is required", file=sys.stderr)
        return 2
    httpd = serve(a.host, a.port, a.key)
    print(f"fake inner api on http://{a.host}:{httpd.server_address[1]}", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
