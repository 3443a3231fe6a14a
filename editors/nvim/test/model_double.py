#!/usr/bin/env python3
"""A stand-in Ollama server for the editor tests (stdlib only).

  model_double.py [--port N] [--port-file FILE] [--completion TEXT] [--delay-ms N] [--log FILE]

Answers on 127.0.0.1 (port 0 = any free one; the port is written to --port-file and printed):
  GET  /api/tags      the one model "double:latest"
  POST /api/generate  {"response": COMPLETION, "done": true}   (or NDJSON when "stream": true),
                      after --delay-ms (default 0): a model slower than Pilotfish's budget
  POST /api/chat      NDJSON: the markdown EXPLANATION in a few pieces, then done: true;
                      for a security review (the system prompt asks for JSON findings) an
                      empty findings list.
  GET  /health        {"status": "ok"}
Every request is appended to --log as one JSON line {"path", "body"}, so a test can check
what Pilotfish sent.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPLANATION = (
    "## What it does\n\n"
    "`add` returns the sum of its two arguments (explained by the pilotfish model double).\n"
)


class Handler(BaseHTTPRequestHandler):
    server_version = "pilotfish-double/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    def _record(self, body):
        if self.server.log_path:
            with self.server.lock, open(self.server.log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "body": body}) + "\n")

    def _send(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on the call (Pilotfish drops superseded calls)

    def do_GET(self):
        self._record(None)
        if self.path == "/api/tags":
            self._send(200, {"models": [{"name": "double:latest", "model": "double:latest"}]})
        elif self.path in ("/health", "/"):
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found: " + self.path})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._record(raw.decode(errors="replace"))
            self._send(400, {"error": "not JSON"})
            return
        self._record(body)
        if self.path == "/api/generate":
            time.sleep(self.server.delay_ms / 1000)
            text = self.server.completion
            if body.get("stream"):
                lines = [{"response": text, "done": False},
                         {"response": "", "done": True, "prompt_eval_count": 10, "eval_count": 3}]
                self._send(200, "".join(json.dumps(l) + "\n" for l in lines).encode(),
                           "application/x-ndjson")
            else:
                self._send(200, {"model": body.get("model"), "response": text, "done": True,
                                 "prompt_eval_count": 10, "eval_count": 3})
        elif self.path == "/api/chat":
            messages = body.get("messages") or []
            prompt = "\n".join(str(m.get("content", "")) for m in messages)
            if "findings" in prompt and "JSON" in prompt:
                answer = '{"findings": []}'
            else:
                answer = EXPLANATION
            pieces = [answer[i:i + 20] for i in range(0, len(answer), 20)]
            lines = [{"model": body.get("model"), "message": {"role": "assistant", "content": p},
                      "done": False} for p in pieces]
            lines.append({"model": body.get("model"), "message": {"role": "assistant", "content": ""},
                          "done": True, "prompt_eval_count": 50, "eval_count": len(pieces)})
            self._send(200, "".join(json.dumps(l) + "\n" for l in lines).encode(),
                       "application/x-ndjson")
        else:
            self._send(404, {"error": "not found: " + self.path})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--completion", default="a + b")
    ap.add_argument("--delay-ms", type=int, default=0,
                    help="wait this long before answering a completion")
    ap.add_argument("--log")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.completion = args.completion
    server.delay_ms = max(args.delay_ms, 0)
    server.log_path = args.log
    server.lock = threading.Lock()
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    print(port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
