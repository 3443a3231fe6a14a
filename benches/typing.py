#!/usr/bin/env python3
"""Typing benchmark: what a person at the keyboard gets from inline completion.

A simulated developer retypes regions of third-party code (the files that
benches/quality_holes.json was cut from: CPython's standard library, crates from the cargo
registry, npm packages of the test bed; never code written in this repository) into the real
`pilotfish` binary over stdio, as an editor would: one keystroke a `textDocument/didChange`
(incremental, UTF-16 positions), a `textDocument/inlineCompletion` request after each
keystroke, the previous pending request cancelled with `$/cancelRequest` (as VS Code does),
and an automatic `textDocument/codeAction` at the cursor where a file opens (VS Code's light
bulb asks at every cursor move).
The rhythm is human (70 ms a key with jitter, a seeded RNG: runs are reproducible) with
pauses (2 s) at natural points: after Enter, and at a word boundary every few words. When
ghost text has been on screen for a reaction time and is what they were about to type, the
developer accepts it (all of it, or its first line or first words): the text goes in as one
edit, followed by `workspace/executeCommand` with the item's `pilotfish.accept` command (for
a whole accept, as VS Code runs an item's command only then), and typing goes on after it.

The same typing runs against a "plain client" baseline: no Pilotfish, no cache, no prefetch;
at the start of each pause (and after each accept) it sends the model one FIM request like
the one Pilotfish would send, and drops it (closes the connection) when typing resumes.

Between the client and the model sits a small HTTP proxy that records every model call (a
POST to a completion endpoint): start, end, whether the client closed it early (aborted),
and llama-server's token timings. It passes each answer on as it comes (a streamed one piece
by piece, so that a first line shows while the model writes the rest) and closes the model
server's connection when the client closes its own. Model-busy time is the union of the
calls' intervals; with `--llama` the report checks it against the model server's own CPU
time divided by its threads, which also counts work a closed call left running.

Python 3.11, standard library only.

    benches/typing.py run --llama qwen [--systems pilotfish,plain] [--quick] [--json out.json]
    benches/typing.py run --llama qwen-0.5b ...     # the second real model (scripts/testbed)
    benches/typing.py run --url http://127.0.0.1:8012 ...   # a llama-server you run
    benches/typing.py run --double 20 ...           # a model double answering in 20 ms
    benches/typing.py run ... --revisit             # half of each file, then back to it
    benches/typing.py report a.json b.json ...      # one table from saved runs
    benches/typing.py selftest                      # the pure pieces (accept rules, positions…)

Diagnostics: `--verbose` prints each pause, ghost text and accept as it happens; `--trace
FILE` appends every model call (request and answer); `--keep` keeps the work directory with
the server's debug log (`pilotfish.log`), whose counts (`why=Deadline`, `source=typed-ahead`…)
the report also shows. Needs the release binary (`cargo build --release`; `--pilotfish` for
another) and, for `--llama`, the test bed (`scripts/testbed`).

`--llama NAME` starts `scripts/llama-server --model NAME` on `--port` (default 8071) and
restarts it before each system, so that no system finds the other's prompts in the model
server's cache; it stops the server at the end. `--url` uses a server you started (its
prompt cache then carries over between systems: the report says so).

Pilotfish runs with the configuration a new user has: the README's llama.cpp model
(`provider = "openai"`, `fim = "qwen"`; `--provider llamacpp` for `/infill` with
`fim = "native"`), and nothing else: no `[completion]` overrides (`--set completion.budget_ms=5000`
adds one for an experiment, and the report shows it).

The double (`--double MS`) speaks llama.cpp's `/infill` and the OpenAI `/v1/completions`
wire formats and answers after MS milliseconds with the truth: the rest of the line the
developer is about to type (an oracle). Its figures measure the completion path's timing,
not a model's quality.

Figures (per system):
- pauses with ghost text: the share of typing pauses in which ghost text appeared before
  typing resumed; pause → ghost p50/p90 (over the pauses that had it), measured from the
  last keystroke; within 100 ms: the share of all pauses with ghost text within 100 ms;
- chars accepted: accepted characters / all characters of the regions (typed + accepted);
- model calls and model-busy seconds per 100 characters of the regions (the proxy's count,
  and in brackets, with `--llama`, the model server's: its CPU time over its threads, which
  also has the prompts it read on after their client closed); aborted share (and
  how many of those were prompt-cache warm-ups, which llama-server reads to the end anyway,
  how many had written a whole line, and how many the client closed on the developer
  acting — a keystroke, accept or change of file after the last piece it read and just
  before the close: given up, where the others closed on what they had read);
- accept → next: after a whole accept the developer waits one pause for the next
  suggestion (not after the region's last character): the median time to it, in how many
  of those accepts it came, and in how many it came within 100 ms.
"""

from __future__ import annotations

import os
import sys

# This file is named typing.py, and Python puts a script's directory first on sys.path: any
# `import typing` (the standard library's) would then find this file. Take the directory
# off before anything is imported, and load quality.py by its path.
sys.dont_write_bytecode = True  # leave no __pycache__ in benches/
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import http.client  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

HERE = Path(_HERE)
REPO = HERE.parent


def _load_quality():
    """benches/quality.py: the holes file, their sources and the percentile helper."""
    spec = importlib.util.spec_from_file_location("pilotfish_bench_quality", HERE / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_quality = _load_quality()
EXT, GROUP, HOLES, pct = _quality.EXT, _quality.GROUP, _quality.HOLES, _quality.pct

LANGUAGE_ID = {"python": "python", "rust": "rust", "javascript": "javascript", "typescript": "typescript"}

# What Pilotfish would send, for the plain client: the default context budget
# (src/syntax/context.rs: 1536 prefix tokens, 75 suffix tokens at ~4 chars a token) and the
# single-line token limit (src/completion.rs).
PLAIN_PREFIX_CHARS = 1536 * 4
PLAIN_SUFFIX_CHARS = 75 * 4
PLAIN_MAX_TOKENS = 64
QWEN_STOPS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
              "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>"]

MODEL_PATHS = ("/infill", "/completion", "/completions", "/v1/completions")


def now() -> float:
    return time.monotonic()


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


# ---------------------------------------------------------------------------------------
# Regions: third-party code to retype

@dataclass
class Region:
    id: str
    language: str
    package: str
    license: str
    source: str
    origin: str          # "file" (the whole source file) or "hole" (the stored prefix + suffix)
    text: str            # the original document
    start: int           # the region is text[start:end]
    end: int

    @property
    def body(self) -> str:
        return self.text[self.start:self.end]


def hole_document(hole: dict) -> tuple[str, int, str]:
    """The whole source file when it is on this machine and still matches the hole,
    else the hole's stored prefix + suffix; the cursor; which of the two."""
    path = Path(hole["source"].replace("~", str(Path.home()), 1))
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        c = hole["cursor_offset"]
        if text[:c].endswith(hole["prefix"]) and text[c:].startswith(hole["expected"]):
            return text, c, "file"
    return hole["prefix"] + hole["suffix"], len(hole["prefix"]), "hole"


def region_end(text: str, start: int, chars: int, max_lines: int = 10) -> int | None:
    """The end of the line where the region from `start` reaches `chars` characters, or
    None when it would be unfit to type (runs off the document, too many or too long lines,
    or is mostly blank)."""
    end = start
    lines = 0
    while end - start < chars:
        nl = text.find("\n", end if end == start else end + 1)
        if nl < 0:
            return None
        end = nl
        lines += 1
        if lines > max_lines:
            return None
    body = text[start:end]
    if any(len(line) > 120 for line in body.split("\n")):
        return None
    if sum(1 for c in body if not c.isspace()) < chars // 2:
        return None
    return end


def pick_regions(count: int, chars: int, seed: int) -> list[Region]:
    """`count` regions, round robin over python, rust and js/ts, each starting where a hole
    of quality_holes.json starts (mid-line, after some code) and running to the end of the
    line where it reaches `chars` characters. Holes whose source file is here come first."""
    holes = json.loads(HOLES.read_text())["holes"]
    rng = random.Random(seed)
    by_group: dict[str, list[tuple[dict, str, int, str]]] = {}
    for h in holes:
        text, cursor, origin = hole_document(h)
        by_group.setdefault(GROUP[h["language"]], []).append((h, text, cursor, origin))
    for group in by_group.values():
        rng.shuffle(group)
        group.sort(key=lambda x: x[3] != "file")  # stable: shuffled within each kind
    regions: list[Region] = []
    groups = ["python", "rust", "js/ts"]
    used: set[str] = set()
    tries = 0
    while len(regions) < count and tries < 10 * len(holes):
        group = by_group.get(groups[tries % len(groups)], [])
        tries += 1
        for h, text, cursor, origin in group:
            if h["id"] in used:
                continue
            used.add(h["id"])
            end = region_end(text, cursor, chars)
            if end is None:
                continue
            regions.append(Region(h["id"], h["language"], h["package"], h["license"], h["source"],
                                  origin, text, cursor, end))
            break
    return regions


# ---------------------------------------------------------------------------------------
# The recording proxy

def send_json(handler: BaseHTTPRequestHandler, status: int, data: bytes) -> bool:
    """Answers an HTTP request with a JSON body; False when the client has gone away."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return True
    except OSError:
        return False


def answer_events(data: bytes) -> list[dict]:
    """The JSON objects of a model's answer, whole or cut off: the one object of a whole
    answer, or the data of each SSE event (each NDJSON line for Ollama) of a streamed one."""
    text = data.decode("utf-8", "replace")
    if not text.lstrip().startswith("data:"):
        try:
            whole = json.loads(text)
            return [whole] if isinstance(whole, dict) else []
        except ValueError:
            pass
    events = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def answer_timings(data: bytes) -> dict:
    """llama-server's `timings` of an answer: in its JSON, or in the last SSE event of a
    streamed one that carries them."""
    for event in reversed(answer_events(data)):
        if isinstance(event.get("timings"), dict):
            return event["timings"]
    return {}


def streamed_text(data: bytes) -> str:
    """The text a model wrote in an answer (whole or cut off): the pieces of its SSE events
    (`/v1/completions`' `choices[0].text`, chat's `delta.content`, `/infill`'s `content`) or
    NDJSON lines (Ollama's `response`)."""
    out = []
    for event in answer_events(data):
        choice = (event.get("choices") or [{}])[0]
        piece = choice.get("text") or (choice.get("delta") or {}).get("content") \
            or event.get("content") or event.get("response") or ""
        out.append(piece if isinstance(piece, str) else "")
    return "".join(out)


@dataclass
class Call:
    path: str
    start: float
    end: float | None = None
    aborted: bool = False
    status: int | None = None
    max_tokens: int | None = None
    prompt_chars: int = 0
    timings: dict = field(default_factory=dict)
    request: bytes = b""
    response: bytes = b""
    # When the last piece of the answer went to the client, and when the client closed its
    # connection (seen at once, not at the model's next piece): which came just before the
    # close says whether the client closed on an answer it had read or on the user's action.
    last_piece: float | None = None
    closed: float | None = None


class Proxy:
    """HTTP proxy in front of the model server. A completion call's connection to the model
    server is closed the moment the client closes its own, so an abort reaches the model
    server as it would without the proxy, and is recorded as one."""

    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.gets = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with proxy.lock:
                    proxy.gets += 1
                self._forward("GET", b"", None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                call = None
                if self.path.rstrip("/").endswith(MODEL_PATHS):
                    call = Call(self.path, now(), request=body)
                    try:
                        req = json.loads(body or b"{}")
                        call.max_tokens = req.get("n_predict", req.get("max_tokens"))
                        call.prompt_chars = len(req.get("prompt") or "") + len(req.get("input_prefix") or "") \
                            + len(req.get("input_suffix") or "") + len(req.get("suffix") or "")
                    except ValueError:
                        pass
                    with proxy.lock:
                        proxy.calls.append(call)
                self._forward("POST", body, call)

            def _client_gone(self, wait: float) -> bool:
                """Whether the client closed its connection (waiting up to `wait` s to see)."""
                return closed(self.connection, wait)

            def _watch_close(self, call: Call, done: threading.Event) -> None:
                """While an answer streams, notes when the client closes its connection, the
                moment it does (the reading loop, which aborts the call, sees it only at the
                model's next piece)."""
                while not done.is_set():
                    if self._client_gone(0.05):
                        call.closed = now()
                        return
                    done.wait(0.01)  # readable but open (it sent more): look again soon

            def _forward(self, method: str, body: bytes, call: Call | None):
                up = http.client.HTTPConnection(proxy.host, proxy.port, timeout=900)
                data, answering = b"", False
                try:
                    up.request(method, self.path, body=body or None,
                               headers={"Content-Type": "application/json"})
                    # Until the model server answers (it reads the prompt first), watch the
                    # client: closing its connection aborts the call.
                    watched = [up.sock, self.connection]
                    while True:
                        ready, _, _ = select.select(watched, [], [], 1.0)
                        if up.sock in ready:
                            break
                        if self.connection in ready:
                            if self._client_gone(0.0):
                                if call:
                                    call.end, call.aborted = now(), True
                                    call.closed = call.end
                                self.close_connection = True
                                return
                            watched = [up.sock]  # it sent more (not a close): stop watching
                    resp = up.getresponse()
                    status = resp.status
                    # The answer goes to the client as it comes (a streamed answer piece by
                    # piece, as the model writes it), chunked; a client that closes its
                    # connection meanwhile aborts the call, which closes the model server's.
                    self.send_response(status)
                    self.send_header("Content-Type", resp.getheader("Content-Type") or "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    answering = True
                    done = threading.Event()
                    if call:
                        threading.Thread(target=self._watch_close, args=(call, done),
                                         daemon=True).start()
                    try:
                        while True:
                            piece = resp.read1(65536)
                            if piece:
                                data += piece
                                if call and call.closed is None:
                                    call.last_piece = now()
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                                self.wfile.flush()
                            if not piece or self._client_gone(0.0):
                                break
                    finally:
                        done.set()
                    if piece:
                        raise BrokenPipeError("the client closed its connection")
                    # llama-server closes the connection after a streamed answer, without
                    # saying so; the client's connection is closed the same way, so that
                    # Pilotfish meets what it would meet without the proxy.
                    upstream_closed = up.sock is None or closed(up.sock, 0.005)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    if upstream_closed:
                        self.close_connection = True
                except (OSError, http.client.HTTPException) as e:
                    if answering:  # the client went away, or the model server mid-answer
                        if call:
                            call.end, call.aborted, call.response = now(), True, data
                            call.closed = call.closed or call.end
                        self.close_connection = True
                        return
                    status, data = 502, json.dumps({"error": f"proxy: {e}"}).encode()
                    if not send_json(self, status, data) and call:
                        call.aborted = True
                finally:
                    up.close()
                if call:
                    call.end, call.status, call.response = now(), status, data
                    call.timings = answer_timings(data)


        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def active(self) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c.end is None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed(sock: socket.socket, wait: float) -> bool:
    """Whether the other end closed `sock` (waiting up to `wait` s to see)."""
    ready, _, _ = select.select([sock], [], [], wait)
    if not ready:
        return False
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return True


# How soon after what caused it a client closes a call: Pilotfish closes a stream within
# milliseconds of the piece that ends the line it reads to, or of the edit that types past it.
CLOSE_CAUSE_S = 0.1


def closed_by(call: Call, acted: list[float]) -> str:
    """Why the client closed `call` early, by what came just before: "user" when the
    developer acted (typed, accepted, changed files) after the last piece of the answer
    reached the client, and within `CLOSE_CAUSE_S` of the close — the call was given up;
    "answer" when the last piece came after that, within `CLOSE_CAUSE_S` — the client
    closed on what it had read (a line it asked for); "other" for neither (a timeout)."""
    when = call.closed if call.closed is not None else call.end
    if when is None:
        return "other"
    before = [t for t in acted if t <= when]
    action = before[-1] if before else None
    piece = call.last_piece
    if action is not None and (piece is None or action > piece) and when - action <= CLOSE_CAUSE_S:
        return "user"
    if piece is not None and when - piece <= CLOSE_CAUSE_S:
        return "answer"
    return "other"


def is_warm_up(call: dict) -> bool:
    """A prompt-cache warm-up among a run's recorded calls: `n_predict` 0, or `max_tokens` 1
    where 0 is not allowed."""
    return (call.get("max_tokens") or 0) <= 1


def busy_seconds(calls: list[Call], until: float) -> float:
    """The union of the calls' intervals (a call still open counts until `until`)."""
    spans = sorted((c.start, c.end if c.end is not None else until) for c in calls)
    total, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def cpu_seconds(stat: str, ticks_per_s: int) -> float:
    """User + system CPU time from the text of /proc/PID/stat (fields 14 and 15, counted
    after the command name, which is in parentheses and may hold spaces)."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


class ServerCpu:
    """The model server's CPU time, read from /proc: a check on the proxy's model-busy
    figure that also counts what the server does after a client closed a call (llama.cpp
    reads a closed call's prompt to its end). Only for a server this bench started."""

    def __init__(self, pid: int, threads: int):
        self.pid, self.threads = pid, threads
        self.ticks = os.sysconf("SC_CLK_TCK")

    @classmethod
    def of_port(cls, port: int, threads: int) -> "ServerCpu | None":
        testbed = Path(os.environ.get("PILOTFISH_TESTBED") or REPO / ".testbed")
        try:
            return cls(int((testbed / "run" / f"llama-server.{port}.pid").read_text()), threads)
        except (OSError, ValueError):
            return None

    def seconds(self) -> float | None:
        """CPU seconds so far divided by the server's threads: busy seconds as it counts them."""
        try:
            cpu = cpu_seconds(Path(f"/proc/{self.pid}/stat").read_text(), self.ticks)
        except (OSError, ValueError, IndexError):
            return None
        return cpu / self.threads


# ---------------------------------------------------------------------------------------
# The model double (an oracle)

class Double:
    """A model server that answers after `delay_ms` with the rest of the line the developer
    is about to type (it is told the current region's original text), on llama.cpp's
    `/infill` and `/completion` and the OpenAI `/v1/completions` wire formats, whole or
    streamed (`"stream": true`) as the client asks."""

    def __init__(self, delay_ms: float):
        self.delay = delay_ms / 1000
        self.original = ""
        self.region = (0, 0)
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, payload: dict, status: int = 200):
                send_json(self, status, json.dumps(payload).encode())

            def _stream(self, native: bool, text: str, prompt_tokens: int):
                """The answer as server-sent events, a piece of about a token each, as
                llama-server writes them: `/infill` and `/completion` (`native`) pieces of
                `content`, the last with `stop: true`; `/v1/completions` chunks, then
                `[DONE]`."""
                pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
                if native:
                    events = [{"content": p, "stop": False} for p in pieces]
                    events.append({"content": "", "stop": True, "tokens_evaluated": prompt_tokens,
                                   "tokens_predicted": len(pieces)})
                else:
                    events = [{"object": "text_completion", "model": "double",
                               "choices": [{"index": 0, "text": p, "finish_reason": None}]}
                              for p in pieces]
                    events.append({"object": "text_completion", "model": "double",
                                   "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
                data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
                if not native:
                    data += b"data: [DONE]\n\n"
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send({"object": "list", "data": [{"id": "double", "object": "model"}]})
                else:
                    self._send({"status": "ok"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    self._send({"error": "not JSON"}, 400)
                    return
                time.sleep(double.delay)
                native = self.path.rstrip("/").endswith(("/infill", "/completion"))
                stops = body.get("stop") or []
                if native:
                    prefix = body.get("input_prefix") or body.get("prompt") or ""
                    limit = body.get("n_predict", 64)
                else:
                    prompt = body.get("prompt") or ""
                    if "<|fim_prefix|>" in prompt:
                        prompt = prompt.rsplit("<|fim_prefix|>", 1)[1].split("<|fim_suffix|>", 1)[0]
                    prefix = prompt
                    limit = body.get("max_tokens", 64)
                text = double.answer(prefix, stops, limit)
                if body.get("stream"):
                    self._stream(native, text, len(prefix) // 4)
                elif native:
                    self._send({"content": text, "stop": True, "tokens_evaluated": len(prefix) // 4,
                                "tokens_predicted": len(text) // 4 + 1})
                else:
                    self._send({"object": "text_completion", "model": "double",
                                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": len(prefix) // 4,
                                          "completion_tokens": len(text) // 4 + 1}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, prefix: str, stops: list[str], max_tokens: int) -> str:
        """The original text after the cursor that `prefix` ends at, to the end of its line
        (the next line that is not blank when the cursor is at a line end, with the blank
        lines before it: a model that wrote only a line break would show nothing), never
        past the region."""
        text, (start, end) = self.original, self.region
        tail = prefix[-300:]
        if not tail:
            return ""
        cursor = None
        i = text.find(tail)
        while i >= 0:
            c = i + len(tail)
            if start <= c <= end:
                cursor = c
            i = text.find(tail, i + 1)
        if cursor is None or cursor >= end:
            return ""
        line = cursor
        while line < end and text[line] == "\n":
            line += 1
        eol = text.find("\n", line)
        out = text[cursor:min(eol if eol >= 0 else end, end)]
        for s in stops:
            if s and s in out:
                out = out[:out.index(s)]
        return out[:max(1, max_tokens) * 4]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------
# An LSP connection to the real binary

# benches/quality.py's client: the binary over stdio, server requests answered as an editor
# would.
Lsp = _quality.Lsp


# ---------------------------------------------------------------------------------------
# The document the developer edits

class Doc:
    def __init__(self, uri: str, text: str):
        self.uri, self.text, self.version = uri, text, 0

    def position(self, offset: int) -> dict:
        line = self.text.count("\n", 0, offset)
        line_start = self.text.rfind("\n", 0, offset) + 1
        return {"line": line, "character": utf16_len(self.text[line_start:offset])}

    def offset(self, pos: dict) -> int:
        at = 0
        for _ in range(pos["line"]):
            nl = self.text.find("\n", at)
            if nl < 0:
                return len(self.text)
            at = nl + 1
        units = 0
        while units < pos["character"] and at < len(self.text) and self.text[at] != "\n":
            units += utf16_len(self.text[at])
            at += 1
        return at

    def replace(self, start: int, end: int, new: str) -> dict:
        """Applies an edit; returns its LSP content change."""
        change = {"range": {"start": self.position(start), "end": self.position(end)}, "text": new}
        self.text = self.text[:start] + new + self.text[end:]
        self.version += 1
        return change


@dataclass
class Answer:
    version: int
    text: str
    t: float
    command: dict | None = None
    replace_end: int | None = None   # the suggestion also replaces text up to here


# ---------------------------------------------------------------------------------------
# The two clients

class PilotfishClient:
    """The real binary, asked as VS Code asks: a request per keystroke, the previous pending
    one cancelled."""
    name = "pilotfish"

    def __init__(self, binary: str, model_url: str, provider: str, sets: list[str], workdir: Path,
                 events: queue.Queue, also_url: str | None = None):
        self.workdir = workdir
        ws = workdir / "workspace"
        ws.mkdir(parents=True, exist_ok=True)
        (ws / ".git").mkdir(exist_ok=True)
        self.config = new_user_config(model_url, provider, sets, also_url)
        (ws / ".pilotfish.toml").write_text(self.config)
        self.log = workdir / "pilotfish.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("PILOTFISH_CONFIG", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY")}
        env.update(HOME=str(workdir), XDG_CONFIG_HOME=str(workdir / "xdg-config"),
                   XDG_STATE_HOME=str(workdir / "xdg-state"),
                   PILOTFISH_LOG=os.environ.get("PILOTFISH_LOG", "pilotfish=debug"))
        self.lsp = Lsp([binary, "--log-file", str(self.log)], ws, env, events)
        self.ws = ws
        init = self.lsp.call("initialize", {
            "processId": os.getpid(),
            "clientInfo": {"name": "pilotfish-typing-bench", "version": "1"},
            "rootUri": f"file://{ws}",
            "workspaceFolders": [{"uri": f"file://{ws}", "name": "workspace"}],
            "capabilities": {
                "textDocument": {"synchronization": {"dynamicRegistration": False},
                                 "inlineCompletion": {"dynamicRegistration": False}},
                "workspace": {"workspaceFolders": True, "executeCommand": {}},
                "window": {"workDoneProgress": True},
            },
        })
        if "error" in init:
            raise RuntimeError(f"initialize failed: {init['error']}")
        encoding = init["result"]["capabilities"].get("positionEncoding", "utf-16")
        if encoding != "utf-16":
            raise RuntimeError(f"the server chose position encoding {encoding}, not utf-16")
        self.lsp.notify("initialized", {})
        self.pending: dict[int, tuple[int, float]] = {}
        self.own: set[int] = set()
        self.stats = {"requests": 0, "cancels": 0, "answers_nonempty": 0, "answers_empty": 0,
                      "answers_error": 0, "answers_after_cancel": 0, "accept_commands": 0}

    def open(self, doc: Doc, language: str, cursor: int) -> None:
        self.lsp.notify("textDocument/didOpen", {"textDocument": {
            "uri": doc.uri, "languageId": LANGUAGE_ID[language], "version": doc.version, "text": doc.text}})
        self.focus(doc, cursor, back=False)

    def focus(self, doc: Doc, cursor: int, back: bool = True) -> None:
        """The developer comes to `doc` (it opens, or they switch back to its tab) with the
        cursor at `cursor`."""
        # VS Code asks for code actions at the cursor whenever it moves (for its light bulb),
        # automatically: here, where the file opens at the region or the developer comes
        # back to it. Typing moves it on in the same place, which tells the server nothing new.
        # As code-server 4.x does (seen in scripts/e2e-editors' server log): twice at the
        # cursor, and at a tab come back to first at its editor's first line.
        at = doc.position(cursor)
        for start in ([{"line": 0, "character": 0}] if back else []) + [at, at]:
            rid = self.lsp.request("textDocument/codeAction", {
                "textDocument": {"uri": doc.uri}, "range": {"start": start, "end": start},
                "context": {"diagnostics": [], "triggerKind": 2}})
            self.own.add(rid)

    def close(self, doc: Doc) -> None:
        self._cancel_pending()
        self.lsp.notify("textDocument/didClose", {"textDocument": {"uri": doc.uri}})

    def _cancel_pending(self) -> None:
        for rid in self.pending:
            self.lsp.notify("$/cancelRequest", {"id": rid})
            self.stats["cancels"] += 1
        self.pending.clear()

    def changed(self, doc: Doc, change: dict, cursor: int, command: dict | None = None) -> None:
        self.lsp.notify("textDocument/didChange", {
            "textDocument": {"uri": doc.uri, "version": doc.version}, "contentChanges": [change]})
        if command:
            rid = self.lsp.request("workspace/executeCommand", {
                "command": command["command"], "arguments": command.get("arguments") or []})
            self.own.add(rid)
            self.stats["accept_commands"] += 1
        self._cancel_pending()
        rid = self.lsp.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": doc.uri}, "position": doc.position(cursor),
            "context": {"triggerKind": 2}})
        self.pending[rid] = (doc.version, now())
        self.stats["requests"] += 1

    def paused(self, doc: Doc, cursor: int) -> None:
        pass  # it asked on the keystroke

    def handle(self, kind: str, t: float, msg, doc: Doc, cursor: int) -> Answer | None:
        if kind == "exit":
            raise RuntimeError(f"pilotfish exited (log: {self.log})")
        if kind != "lsp" or "id" not in msg:
            return None
        rid = msg["id"]
        if rid in self.own:
            self.own.discard(rid)
            return None
        if rid not in self.pending:
            self.stats["answers_after_cancel"] += 1
            return None
        version, _ = self.pending.pop(rid)
        if "error" in msg:
            self.stats["answers_error"] += 1
            return None
        result = msg.get("result") or {}
        items = result.get("items", []) if isinstance(result, dict) else result
        item = items[0] if items else None
        text = item.get("insertText") if item else None
        if isinstance(text, dict):
            text = text.get("value")
        if not text:
            self.stats["answers_empty"] += 1
            return None
        self.stats["answers_nonempty"] += 1
        replace_end = None
        rng = item.get("range")
        if rng and version == doc.version:
            start, end = doc.offset(rng["start"]), doc.offset(rng["end"])
            typed = doc.text[start:cursor]
            if start < cursor and text.startswith(typed):
                text = text[len(typed):]  # the item restates the word before the cursor
            if end > cursor:
                replace_end = end
        return Answer(version, text, t, item.get("command"), replace_end)

    def stop(self) -> None:
        self.lsp.stop()

    def usage_calls(self) -> dict:
        """How the server's usage log ended its model calls (warm-ups are not logged):
        `ok` and `empty` ended with an answer — a stream Pilotfish closed once it had the
        lines it wanted among them —, `superseded` and `cancelled` were given up."""
        counts: dict[str, int] = {}
        try:
            usage = (self.workdir / "xdg-state" / "pilotfish" / "usage.jsonl").read_text()
        except OSError:
            return counts
        for line in usage.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "call":
                outcome = str(event.get("outcome"))
                counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def log_counts(self) -> dict:
        """What the server's debug log says about its answers."""
        counts: dict[str, int] = {}
        try:
            for line in self.log.read_text(errors="replace").splitlines():
                m = re.search(r"no suggestion.*?why=(\w+)", line)
                if m:
                    counts[f"empty:{m.group(1)}"] = counts.get(f"empty:{m.group(1)}", 0) + 1
                    continue
                m = re.search(r"\bsuggestion\b.*?source=\"?([\w-]+)", line)
                if m:
                    counts[f"shown:{m.group(1)}"] = counts.get(f"shown:{m.group(1)}", 0) + 1
                    by = re.search(r"\bmodel=\"?([\w.-]+)", line)
                    if by:
                        counts[f"shown by:{by.group(1)}"] = counts.get(f"shown by:{by.group(1)}", 0) + 1
                if "completion routed by speed" in line:
                    counts["routed by speed"] = counts.get("routed by speed", 0) + 1
        except OSError:
            pass
        return counts


def new_user_config(model_url: str, provider: str, sets: list[str], also_url: str | None = None) -> str:
    """The README's llama.cpp model as a new user writes it; `sets` (section.key=value) are
    experiments on top, shown in the report. `also_url`: a second model of the same kind,
    after the first in the completion route."""
    def model(url: str) -> str:
        if provider == "llamacpp":
            return f'provider = "llamacpp"\nurl = "{url}"\nfim = "native"\n'
        return f'provider = "openai"\nurl = "{url}/v1"\nfim = "qwen"\n'
    out = "[models.fast]\n" + model(model_url) + 'model = "qwen2.5-coder-1.5b"\n\n'
    if also_url:
        out += "[models.also]\n" + model(also_url) + 'model = "second"\n\n'
        out += '[routes]\ncomplete = ["fast", "also"]\n'
    else:
        out += '[routes]\ncomplete = ["fast"]\n'
    sections: dict[str, list[str]] = {}
    for s in sets:
        key, _, value = s.partition("=")
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    for section, lines in sections.items():
        out += f"\n[{section}]\n" + "\n".join(lines) + "\n"
    try:
        tomllib.loads(out)
    except tomllib.TOMLDecodeError as e:
        # Pilotfish would start with no model and answer every request empty.
        raise SystemExit(f"typing.py: --set makes the config invalid TOML ({e}); "
                         f"quote string values: --set 'completion.prefetch=\"off\"'") from None
    return out


class PlainCall(threading.Thread):
    def __init__(self, url: str, path: str, body: dict, version: int, events: queue.Queue, parse):
        super().__init__(daemon=True)
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.path, self.body, self.version, self.events, self.parse = path, body, version, events, parse
        self.lock = threading.Lock()
        self.conn: http.client.HTTPConnection | None = None
        self.aborted = False

    def run(self) -> None:
        with self.lock:
            if self.aborted:
                return
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)
        try:
            self.conn.request("POST", self.path, body=json.dumps(self.body),
                              headers={"Content-Type": "application/json"})
            data = self.conn.getresponse().read()
            text = self.parse(json.loads(data))
        except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
            text = None
        finally:
            self.conn.close()
        if not self.aborted:
            self.events.put(("plain", now(), (self, text)))

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            if self.conn is not None and self.conn.sock is not None:
                try:
                    self.conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class PlainClient:
    """No Pilotfish: at the start of each pause, one FIM request to the model with the
    prompt Pilotfish's default context budget would give (prefix ≤ 6,144 characters, suffix
    ≤ 300, whole lines), 64 tokens, temperature 0, stopping at a line break when the cursor
    follows code on its line; dropped (connection closed) when typing resumes."""
    name = "plain"

    def __init__(self, model_url: str, provider: str, events: queue.Queue):
        self.url, self.provider, self.events = model_url, provider, events
        self.call: PlainCall | None = None
        self.stats = {"requests": 0, "aborts": 0, "answers_nonempty": 0, "answers_empty": 0,
                      "answers_error": 0}

    def open(self, doc: Doc, language: str, cursor: int) -> None:
        pass

    def focus(self, doc: Doc, cursor: int, back: bool = True) -> None:
        pass

    def close(self, doc: Doc) -> None:
        self._abort()

    def _abort(self) -> None:
        if self.call is not None:
            self.call.abort()
            self.stats["aborts"] += 1
            self.call = None

    def changed(self, doc: Doc, change: dict, cursor: int, command: dict | None = None) -> None:
        self._abort()

    def paused(self, doc: Doc, cursor: int) -> None:
        self._abort()
        text = doc.text
        start = max(0, cursor - PLAIN_PREFIX_CHARS)
        if start > 0:
            start = text.find("\n", start) + 1 or cursor
        end = min(len(text), cursor + PLAIN_SUFFIX_CHARS)
        if end < len(text):
            nl = text.rfind("\n", cursor, end)
            end = nl + 1 if nl >= cursor else end
        prefix, suffix = text[start:cursor], text[cursor:end]
        line_before = text[text.rfind("\n", 0, cursor) + 1:cursor]
        stops = QWEN_STOPS[:3] + (["\n"] if line_before.strip() else [])
        if self.provider == "llamacpp":
            path = "/infill"
            body = {"input_prefix": prefix, "input_suffix": suffix, "input_extra": [],
                    "n_predict": PLAIN_MAX_TOKENS, "temperature": 0.0, "stop": stops,
                    "cache_prompt": True, "stream": False}
            parse = lambda d: d["content"]  # noqa: E731
        else:
            path = "/v1/completions"
            body = {"model": "qwen2.5-coder-1.5b",
                    "prompt": f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
                    "max_tokens": PLAIN_MAX_TOKENS, "temperature": 0.0, "stop": stops, "stream": False}
            parse = lambda d: d["choices"][0]["text"]  # noqa: E731
        self.call = PlainCall(self.url, path, body, doc.version, self.events, parse)
        self.call.start()
        self.stats["requests"] += 1

    def handle(self, kind: str, t: float, msg, doc: Doc, cursor: int) -> Answer | None:
        if kind != "plain":
            return None
        call, text = msg
        if call is not self.call:
            return None
        self.call = None
        if text is None:
            self.stats["answers_error"] += 1
            return None
        text = text.rstrip()
        if not text:
            self.stats["answers_empty"] += 1
            return None
        self.stats["answers_nonempty"] += 1
        return Answer(call.version, text, t)

    def stop(self) -> None:
        self._abort()


# ---------------------------------------------------------------------------------------
# The developer

@dataclass
class Ghost:
    text: str
    since: float          # on screen (as this suggestion or what it continues) since
    evaluated: bool = False
    command: dict | None = None
    replace_end: int | None = None


@dataclass
class Options:
    key_ms: float = 70
    jitter_ms: float = 15
    pause_ms: float = 2000
    react_ms: float = 300
    words_min: int = 3
    words_max: int = 6
    min_accept: int = 3
    partial: str = "word"          # "none", "line", "word" (whole lines first, then words)
    partial_command: bool = False  # run the item's command on partial accepts too
    open_ms: float = 1000
    tail_ms: float = 2000


def word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def accept_length(suggestion: str, target: str, opts: Options) -> int:
    """How much of `suggestion` the developer takes: all of it when it is exactly the start
    of what they are about to type; otherwise (partial accepts) the longest matching run of
    whole lines or whole words; 0 when that is shorter than `min_accept`."""
    m = 0
    for a, b in zip(suggestion, target):
        if a != b:
            break
        m += 1
    if m == len(suggestion):
        return m if m >= opts.min_accept else 0
    if opts.partial == "none":
        return 0
    best = 0
    nl = suggestion.find("\n")
    if 0 < nl <= m:
        best = suggestion.rfind("\n", 0, m + 1)  # whole lines, without the last line break
    if opts.partial == "word":
        for k in range(m, 0, -1):
            if k == len(suggestion) or word_char(suggestion[k - 1]) != word_char(suggestion[k]):
                best = max(best, k)
                break
    return best if best >= opts.min_accept else 0


@dataclass
class PauseRecord:
    region: str
    kind: str                 # "typing" or "accept" (after a whole accept)
    start: float
    ghost_ms: float | None = None
    accepted: int = 0


class Developer:
    def __init__(self, client, opts: Options, rng: random.Random, events: queue.Queue,
                 double: Double | None):
        self.client, self.opts, self.rng, self.events, self.double = client, opts, rng, events, double
        self.pauses: list[PauseRecord] = []
        self.accepts: list[dict] = []
        self.typed = 0
        self.keystrokes = 0
        self.accepted = 0
        self.ghost: Ghost | None = None
        self.continues: Ghost | None = None   # what the ghost would be if the next answer continues it
        self.ghost_times: list[float] = []    # arrival of each ghost text (for the pause in progress)
        self.left: dict[str, tuple[Doc, int, int]] = {}  # files left half typed: doc, cursor, pos
        self.acted: list[float] = []  # when each edit, accept or change of file went to the client
        self.verbose = False

    def say(self, what: str) -> None:
        if self.verbose:
            print(f"    {now() % 1000:8.3f} v{self.doc.version:<4} {what}", file=sys.stderr, flush=True)

    # -- the event loop
    def wait_until(self, deadline: float, stop=None) -> None:
        while True:
            if stop is not None and stop():
                return
            left = deadline - now()
            if left <= 0:
                return
            try:
                kind, t, msg = self.events.get(timeout=left)
            except queue.Empty:
                continue
            answer = self.client.handle(kind, t, msg, self.doc, self.cursor)
            if answer is not None and answer.version == self.doc.version:
                self.show(answer)
                self.say(f"ghost {answer.text[:60]!r}")
            elif answer is not None:
                self.say(f"(late answer for v{answer.version}: {answer.text[:40]!r})")

    def show(self, a: Answer) -> None:
        c = self.continues
        if c is not None and c.text == a.text:
            self.ghost = Ghost(a.text, c.since, c.evaluated, a.command, a.replace_end)
        else:
            self.ghost = Ghost(a.text, a.t, False, a.command, a.replace_end)
        self.ghost_times.append(a.t)

    def edit(self, new: str, replace_end: int | None = None, command: dict | None = None) -> None:
        end = replace_end if replace_end is not None else self.cursor
        change = self.doc.replace(self.cursor, end, new)
        self.cursor += len(new)
        g = self.ghost
        self.continues = (Ghost(g.text[len(new):], g.since, g.evaluated)
                          if g is not None and g.text.startswith(new) and len(g.text) > len(new) else None)
        self.ghost = None
        self.ghost_times = []
        self.acted.append(now())
        self.client.changed(self.doc, change, self.cursor, command)

    # -- typing
    def interval(self) -> float:
        o = self.opts
        return min(max(self.rng.gauss(o.key_ms, o.jitter_ms), o.key_ms / 2), o.key_ms * 2.5) / 1000

    def next_key(self, body: str, pos: int) -> str:
        """One keystroke: a character, or Enter with the next line's indentation (as an
        editor's auto-indent puts it)."""
        if body[pos] != "\n":
            return body[pos]
        j = pos + 1
        while j < len(body) and body[j] in " \t":
            j += 1
        return body[pos:j]

    def run_region(self, region: Region, workspace: Path, until: int | None = None) -> None:
        """Types `region` (its body up to `until`, then leaves the file open; the next call
        for the region comes back to it and types on to the end, then closes it)."""
        o = self.opts
        body = region.body
        if region.id in self.left:
            self.doc, self.cursor, pos = self.left.pop(region.id)
            self.acted.append(now())
            self.client.focus(self.doc, self.cursor)
        else:
            name = f"{region.id}-{Path(region.source).name}"
            if not name.endswith(EXT[region.language]):
                name += EXT[region.language]
            self.doc = Doc(f"file://{workspace}/{name}", region.text[:region.start] + region.text[region.end:])
            self.cursor = region.start
            pos = 0
            self.client.open(self.doc, region.language, self.cursor)
        self.ghost = self.continues = None
        self.region = region
        if self.double:
            self.double.original, self.double.region = region.text, (region.start, region.end)
        self.wait_until(now() + o.open_ms / 1000)
        stop = len(body) if until is None else until
        words, words_target = 0, self.rng.randint(o.words_min, o.words_max)
        t_next = now() + self.interval()
        while pos < stop:
            self.wait_until(t_next)
            taken = self.consider(body, pos, mid_typing=True)
            if taken:
                pos += taken
                t_next = now() + self.interval()
                continue
            key = self.next_key(body, pos)
            self.edit(key)
            self.typed += len(key)
            self.keystrokes += 1
            before = body[pos - 1] if pos > 0 else " "
            pos += len(key)
            if pos >= stop:
                break
            if word_char(key[0]) and not word_char(before):
                words += 1
            pause = key.startswith("\n")
            if not pause and words >= words_target and key in " (.,[=:" and not before.isspace():
                pause = True
            if pause:
                words, words_target = 0, self.rng.randint(o.words_min, o.words_max)
                pos += self.pause(body, pos, "typing")
            t_next = now() + self.interval()
        if until is not None:
            self.left[region.id] = (self.doc, self.cursor, pos)
            return
        self.wait_until(now() + o.tail_ms / 1000)
        self.acted.append(now())
        self.client.close(self.doc)

    def pause(self, body: str, pos: int, kind: str) -> int:
        """A pause from now (the last keystroke or accept): waits for ghost text, reads it,
        accepts it if it is right. Returns how many characters were accepted in it."""
        o = self.opts
        rec = PauseRecord(self.region.id, kind, now())
        self.pauses.append(rec)
        self.say(f"pause ({kind}) before {body[pos:pos + 30]!r}")
        self.client.paused(self.doc, self.cursor)
        end = rec.start + o.pause_ms / 1000
        while True:
            self.wait_until(end, stop=lambda: self.ghost is not None and not self.ghost.evaluated)
            if self.ghost is not None and rec.ghost_ms is None:
                # On screen, read already or not: the rest of a suggestion the developer
                # turned down and typed along is still ghost text in this pause.
                rec.ghost_ms = (self.ghost_times[0] - rec.start) * 1000
            if self.ghost is None or self.ghost.evaluated:
                return 0
            ghost = self.ghost
            self.wait_until(max(now(), ghost.since + o.react_ms / 1000))
            if self.ghost is not ghost:
                continue
            n = self.consider(body, pos, mid_typing=False, record=rec)
            if n == 0:
                self.wait_until(end)
            # After a whole accept, consider() waited out the pause that follows it; after a
            # partial one the developer types on at once.
            return n

    def consider(self, body: str, pos: int, mid_typing: bool, record: PauseRecord | None = None) -> int:
        """Reads the ghost text on screen (once it has been there for the reaction time);
        accepts what is right. Returns the number of characters accepted."""
        g = self.ghost
        if g is None or g.evaluated or now() - g.since < self.opts.react_ms / 1000:
            return 0
        g.evaluated = True
        target = body[pos:]
        if g.replace_end is not None:
            # The item also replaces text after the cursor, which is the code after the region:
            # right only when it completes the region and puts that text back.
            replaced = self.doc.text[self.cursor:g.replace_end]
            if g.text != target + replaced:
                return 0
            n = len(target)
            kind = "whole"
        else:
            n = accept_length(g.text, target, self.opts)
            kind = "whole" if n == len(g.text) else "partial"
        self.say(f"reads {g.text[:50]!r}: {'takes ' + str(n) if n else 'no'}")
        if n == 0:
            return 0
        command = g.command if kind == "whole" or self.opts.partial_command else None
        t = now()
        self.edit(g.text if kind == "whole" else g.text[:n],
                  g.replace_end if kind == "whole" else None, command)
        self.accepted += n
        if record is not None:
            record.accepted = n
        at_end = pos + n >= len(body)
        acc = {"region": self.region.id, "t": t, "chars": n, "kind": kind, "mid_typing": mid_typing,
               "at_end": at_end, "at_line_end": at_end or body[pos + n] == "\n", "next_ms": None}
        self.accepts.append(acc)
        # After a whole accept the developer waits a pause for the next suggestion, unless
        # the region is done (what follows is already in the file).
        if kind == "whole" and not at_end:
            rec = len(self.pauses)
            more = self.pause(body, pos + n, "accept")
            after = self.pauses[rec]
            acc["next_ms"] = after.ghost_ms
            n += more
        return n


# ---------------------------------------------------------------------------------------
# Running a system

def line_end_near_middle(body: str) -> int:
    """The first line end past the middle of `body`, else the last before it; -1 if none."""
    mid = len(body) // 2
    after = body.find("\n", mid)
    return after if after >= 0 else body.rfind("\n", 0, mid)


def visits(regions: list[Region], revisit: bool) -> list[tuple[Region, int | None]]:
    """The order the developer types the regions in: each whole, one after the other; or
    (`revisit`) in pairs of files, each typed to a line end near its middle, then
    the other, then back to the first for the rest, and to the other's rest."""
    if not revisit:
        return [(r, None) for r in regions]
    out: list[tuple[Region, int | None]] = []
    for pair in (regions[i:i + 2] for i in range(0, len(regions), 2)):
        out += [(r, half) for r in pair if (half := line_end_near_middle(r.body)) > 0]
        out += [(r, None) for r in pair]
    return out


def run_system(name: str, args, regions: list[Region], model_url: str, double: Double | None,
               model_label: str, server: ServerCpu | None = None) -> dict:
    events: queue.Queue = queue.Queue()
    proxy = Proxy(model_url)
    workdir = Path(tempfile.mkdtemp(prefix=f"pilotfish-typing-{name}-"))
    opts = Options(key_ms=args.key_ms, jitter_ms=args.jitter_ms, pause_ms=args.pause_ms,
                   react_ms=args.react_ms, min_accept=args.min_accept, partial=args.partial,
                   partial_command=args.partial_command, open_ms=args.open_ms)
    if name == "pilotfish":
        client = PilotfishClient(args.pilotfish, proxy.url, args.provider, args.set, workdir, events,
                                 getattr(args, "also_url", None))
    else:
        client = PlainClient(proxy.url, args.provider, events)
    dev = Developer(client, opts, random.Random(args.seed), events, double)
    dev.verbose = args.verbose
    loads = [loadavg()]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(5):
            loads.append(loadavg())
    threading.Thread(target=sample, daemon=True).start()
    t0 = now()
    busy0 = server.seconds() if server else None
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        for i, (region, until) in enumerate(visits(regions, args.revisit)):
            print(f"  [{name}] visit {i + 1} {region.id} ({region.language}, "
                  f"{len(region.body)} chars{'' if until is None else f', to {until}'})",
                  file=sys.stderr, flush=True)
            dev.run_region(region, workdir / "workspace", until)
            settle = now() + 30
            while proxy.active() and now() < settle:
                dev.wait_until(now() + 0.1)
    finally:
        end = now()
        busy1 = server.seconds() if server else None
        sampling.set()
        loads.append(loadavg())
        log_counts = client.log_counts() if name == "pilotfish" else {}
        usage_calls = client.usage_calls() if name == "pilotfish" else {}
        client.stop()
        proxy.close()
    calls = list(proxy.calls)
    if args.trace:
        with open(args.trace, "a") as f:
            for c in calls:
                f.write(json.dumps({"system": name, "start_s": round(c.start - t0, 3), "path": c.path,
                                    "aborted": c.aborted, "request": c.request.decode(errors="replace"),
                                    "response": c.response.decode(errors="replace")}) + "\n")
    chars = sum(len(r.body) for r in regions)
    assert dev.typed + dev.accepted == chars, (dev.typed, dev.accepted, chars)
    result = {
        "system": name, "model": model_label, "started": started,
        "wall_s": round(end - t0, 1), "regions": [
            {"id": r.id, "language": r.language, "package": r.package, "license": r.license,
             "source": r.source, "origin": r.origin, "chars": len(r.body)} for r in regions],
        "chars": chars, "typed": dev.typed, "keystrokes": dev.keystrokes, "accepted": dev.accepted,
        "pauses": [{"region": p.region, "kind": p.kind, "ghost_ms": p.ghost_ms, "accepted": p.accepted}
                   for p in dev.pauses],
        "accepts": [{k: v for k, v in a.items() if k != "t"} for a in dev.accepts],
        "calls": [{"path": c.path, "ms": round(((c.end or end) - c.start) * 1000, 1),
                   "start_s": round(c.start - t0, 3), "aborted": c.aborted, "status": c.status,
                   "max_tokens": c.max_tokens, "prompt_chars": c.prompt_chars,
                   "prompt_n": c.timings.get("prompt_n"), "predicted_n": c.timings.get("predicted_n"),
                   # What a call closed mid-answer had written: a stream Pilotfish closed one line
                   # after the first line it showed has written whole lines.
                   "lines_written": streamed_text(c.response).count("\n") if c.aborted else None,
                   "closed_by": closed_by(c, dev.acted) if c.aborted else None}
                  for c in calls],
        "busy_s": round(busy_seconds(calls, end), 2),
        # The model server's CPU seconds over the run divided by its threads: busy seconds as
        # the server counts them (None when the bench did not start it).
        "server_cpu_busy_s": (round(busy1 - busy0, 2)
                              if busy0 is not None and busy1 is not None else None),
        "client": client.stats, "server_log": log_counts, "usage_calls": usage_calls,
        "load": {"min": min(loads), "mean": round(statistics.mean(loads), 2), "max": max(loads)},
        "options": vars(opts),
    }
    if name == "pilotfish":
        result["config"] = client.config
    if args.keep:
        print(f"  kept {workdir} (the server's log: pilotfish.log)", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def summarize(r: dict) -> dict:
    typing_pauses = [p for p in r["pauses"] if p["kind"] == "typing"]
    shown = [p["ghost_ms"] for p in typing_pauses if p["ghost_ms"] is not None]
    whole = [a for a in r["accepts"] if a["kind"] == "whole"]
    waited = [a for a in whole if not a.get("at_end")]
    nexts = [a["next_ms"] for a in waited if a["next_ms"] is not None]
    calls = r["calls"]
    per100 = 100 / r["chars"] if r["chars"] else 0
    n = len(typing_pauses)
    return {
        "pauses": n,
        "shown": len(shown),
        "shown_share": len(shown) / n if n else 0,
        "ghost_p50_ms": pct(shown, .5) if shown else None,
        "ghost_p90_ms": pct(shown, .9) if shown else None,
        "within100_share": sum(1 for x in shown if x <= 100) / n if n else 0,
        "accepted_share": r["accepted"] / r["chars"] if r["chars"] else 0,
        "accepts_whole": len(whole),
        "accepts_partial": len(r["accepts"]) - len(whole),
        "calls": len(calls),
        "calls_per100": len(calls) * per100,
        "busy_per100": r["busy_s"] * per100,
        "server_busy_per100": (r["server_cpu_busy_s"] * per100
                               if r.get("server_cpu_busy_s") is not None else None),
        "aborted": sum(1 for c in calls if c["aborted"]),
        "aborted_share": sum(1 for c in calls if c["aborted"]) / len(calls) if calls else 0,
        # Prompt-cache warm-ups closed while their prompt is read: llama-server reads it on
        # and keeps it (BENCHMARKS.md).
        "aborted_warm_ups": sum(1 for c in calls if c["aborted"] and is_warm_up(c)),
        # Closed after writing at least one whole line: its answer was used (shown, or cached
        # for typing along), not thrown away.
        "aborted_after_a_line": sum(1 for c in calls if c["aborted"] and (c.get("lines_written") or 0) > 0),
        # Closed when the developer acted (typed on, accepted, changed files): given up, as
        # the "aborted when typing resumed" counts (runs before this was recorded
        # have no `closed_by`: None).
        "aborted_on_user": (sum(1 for c in calls if c.get("closed_by") == "user")
                            if any("closed_by" in c for c in calls) else None),
        "next_p50_ms": pct(nexts, .5) if nexts else None,
        "next_within100": sum(1 for x in nexts if x <= 100),
        "next_shown": len(nexts),
        "next_waited": len(waited),
    }


def fmt_ms(x) -> str:
    if x is None:
        return "–"
    return f"{x:.0f} ms" if x < 10_000 else f"{x / 1000:.1f} s"


def table(results: list[dict]) -> str:
    out = ["| system | model | pauses with ghost text | pause → ghost p50 / p90 | within 100 ms "
           "| chars accepted | accepts (whole + partial) | model calls / 100 chars "
           "| model-busy / 100 chars (the server's count) | calls aborted | accept → next p50 (came / waited; within 100 ms) | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = summarize(r)
        # The model server's own count (CPU time / threads), which also has the prompts it
        # read on after their client closed; with `--llama` only.
        server_busy = ("" if s["server_busy_per100"] is None
                       else f" ({s['server_busy_per100']:.1f} s)")
        on_user = ("" if s["aborted_on_user"] is None
                   else f"; {s['aborted_on_user']} on the developer acting")
        out.append(
            f"| {r['system']} | {r['model']} | {100 * s['shown_share']:.0f}% ({s['shown']}/{s['pauses']}) "
            f"| {fmt_ms(s['ghost_p50_ms'])} / {fmt_ms(s['ghost_p90_ms'])} | {100 * s['within100_share']:.0f}% "
            f"| {100 * s['accepted_share']:.1f}% ({r['accepted']}/{r['chars']}) "
            f"| {s['accepts_whole']} + {s['accepts_partial']} | {s['calls_per100']:.1f} ({s['calls']}) "
            f"| {s['busy_per100']:.1f} s{server_busy} "
            f"| {100 * s['aborted_share']:.0f}% ({s['aborted']}/{s['calls']}"
            f"{'; ' + str(s['aborted_warm_ups']) + ' warm-ups' if s['aborted_warm_ups'] else ''}"
            f"{'; ' + str(s['aborted_after_a_line']) + ' after writing a line' if s['aborted_after_a_line'] else ''}"
            f"{on_user}) "
            f"| {fmt_ms(s['next_p50_ms'])} ({s['next_shown']}/{s['next_waited']}; {s['next_within100']}) "
            f"| {r['load']['mean']:.1f} ({r['load']['min']:.1f}–{r['load']['max']:.1f}) |")
    return "\n".join(out)


def details(results: list[dict]) -> str:
    out = []
    for r in results:
        c = r["client"]
        line = f"- {r['system']} / {r['model']}: {r['wall_s']} s, {r['keystrokes']} keystrokes; client {c}"
        if r.get("server_log"):
            line += f"; server log {r['server_log']}"
        if r.get("usage_calls"):
            u = r["usage_calls"]
            line += (f"; the usage log's {sum(u.values())} model calls (warm-ups not logged) ended "
                     + ", ".join(f"{k} {v}" for k, v in sorted(u.items(), key=lambda kv: -kv[1])))
        if r.get("server_cpu_busy_s") is not None:
            line += (f"; the model server's CPU time / threads: {r['server_cpu_busy_s']:.1f} s "
                     f"(model-busy by the proxy: {r['busy_s']:.1f} s)")
        done = [x for x in r["calls"] if not x["aborted"] and x["prompt_n"] is not None]
        warm = [x for x in done if is_warm_up(x)]
        done = [x for x in done if x not in warm]
        if done:
            line += (f"; finished calls read {statistics.mean(x['prompt_n'] for x in done):.0f} new prompt "
                     f"tokens on average (median call {pct([x['ms'] for x in done], .5):.0f} ms)")
        if warm:
            line += (f"; {len(warm)} finished warm-ups read {statistics.mean(x['prompt_n'] for x in warm):.0f} "
                     f"(median {pct([x['ms'] for x in warm], .5):.0f} ms)")
        waited = [a for a in r["accepts"] if a["kind"] == "whole" and not a.get("at_end")]
        if waited:
            line += (f"; {sum(1 for a in waited if a.get('at_line_end'))} of the {len(waited)} whole accepts "
                     f"followed by a wait ended at a line end")
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Model servers

def start_llama(model: str, port: int) -> tuple[str, str]:
    """(Re)starts scripts/llama-server with `model` on `port`; returns its URL and the
    thread count it chose."""
    script = REPO / "scripts" / "llama-server"
    if not os.environ.get("PILOTFISH_TESTBED") and not (REPO / ".testbed" / "chroot").is_dir():
        sys.exit("--llama: PILOTFISH_TESTBED is unset and there is no test bed in this checkout; "
                 "scripts/llama-server would provision a new one here (minutes, ~2 GB). Export "
                 "PILOTFISH_TESTBED (e.g. /work/main/.testbed) or run scripts/testbed first.")
    subprocess.run([script, "stop", "--port", str(port)], check=False, capture_output=True)
    # The same thread count for every system compared (scripts/llama-server would choose by
    # the load average at its start, which differs between runs): all cores unless set.
    env = dict(os.environ)
    env.setdefault("PILOTFISH_LLAMA_THREADS", str(os.cpu_count() or 1))
    p = subprocess.run([script, "--model", model, "--port", str(port)], capture_output=True,
                       text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"scripts/llama-server failed:\n{p.stderr}")
    m = re.search(r"threads: (\d+)", p.stderr)
    return p.stdout.strip().splitlines()[-1], (m.group(1) if m else env["PILOTFISH_LLAMA_THREADS"])


def stop_llama(port: int) -> None:
    subprocess.run([REPO / "scripts" / "llama-server", "stop", "--port", str(port)],
                   check=False, capture_output=True)


def default_binary() -> str:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return str(target / "release" / "pilotfish")


def run(args) -> None:
    if args.quick:
        args.regions, args.chars = 3, 60
    regions = pick_regions(args.regions, args.chars, args.seed)
    systems = args.systems.split(",")
    for s in systems:
        if s not in ("pilotfish", "plain"):
            sys.exit(f"unknown system {s!r} (pilotfish, plain)")
    if "pilotfish" in systems and not Path(args.pilotfish).is_file():
        sys.exit(f"no pilotfish binary at {args.pilotfish} (cargo build --release, or --pilotfish)")
    targets = [x for x in (args.llama, args.url, args.double) if x is not None]
    if len(targets) != 1:
        sys.exit("give exactly one of --llama NAME, --url URL, --double MS")
    print(f"regions: {', '.join(f'{r.id} ({len(r.body)})' for r in regions)}", file=sys.stderr)
    results = []
    double = None
    notes = []
    try:
        for s in systems:
            server = None
            if args.llama:
                url, threads = start_llama(args.llama, args.port)
                server = ServerCpu.of_port(args.port, int(threads))
                label = f"{args.llama} (llama-server, {threads} thread{'s' if threads != '1' else ''})"
                if args.also:
                    args.also_url, _ = start_llama(args.also, args.port + 1)
                    label += f" + {args.also} (its calls not counted)"
            elif args.url:
                url, label = args.url.rstrip("/"), f"llama-server at {args.url}"
                if len(systems) > 1:
                    notes.append("the model server was not restarted between systems: its prompt cache carried over")
            else:
                if double is None:
                    double = Double(args.double)
                url, label = double.url, f"double, {args.double:g} ms"
            if s == "pilotfish" and args.set:
                label += f"; {', '.join(args.set)}"
            if args.provider == "llamacpp":
                label += "; /infill"
            if args.revisit:
                label += "; files revisited"
            print(f"{s} against {label}", file=sys.stderr, flush=True)
            results.append(run_system(s, args, regions, url, double, label, server))
    finally:
        if double:
            double.close()
        if args.llama and not args.keep_server:
            stop_llama(args.port)
            if args.also:
                stop_llama(args.port + 1)
    command = "benches/typing.py " + " ".join(sys.argv[1:])
    for r in results:
        r["command"] = command
        r["notes"] = notes
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "results": results}, indent=1))
    print(f"\n`{command}`\n")
    print(table(results))
    print()
    print(details(results))
    for n in notes:
        print(f"- note: {n}")


def report(paths: list[str]) -> None:
    results = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        results.extend(data["results"])
        print(f"- `{data['command']}` ({Path(p).name})")
    print()
    print(table(results))
    print()
    print(details(results))


def proxy_selftest(check) -> None:
    """The recording proxy passes a streamed answer on piece by piece (its first piece
    arrives while the model server still writes), and a client that closes its connection
    mid-answer is recorded as an abort."""
    pieces, gap = 5, 0.2

    class Streaming(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(pieces):
                    event = b'data: {"choices":[{"text":"%d"}]}\n\n' % i
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                    time.sleep(gap)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = Proxy(f"http://127.0.0.1:{upstream.server_address[1]}")
    port = int(proxy.url.rsplit(":", 1)[1])
    body = b'{"prompt": "x", "stream": true}'
    headers = {"Content-Type": "application/json"}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.monotonic()
        conn.request("POST", "/v1/completions", body, headers)
        resp = conn.getresponse()
        first = resp.read1(4096)
        check("proxy: the first piece comes before the last is written",
              (b'"0"' in first, time.monotonic() - started < (pieces - 1) * gap), (True, True))
        rest = resp.read()
        check("proxy: the whole answer", (first + rest).count(b"data:"), pieces)
        conn.close()
        time.sleep(0.1)
        check("proxy: a whole answer is not an abort", [c.aborted for c in proxy.calls], [False])

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/completions", body, headers)
        conn.getresponse().read1(4096)
        closing = now()
        conn.close()  # mid-answer
        time.sleep(2 * gap + 0.2)
        check("proxy: closing mid-answer is an abort", [c.aborted for c in proxy.calls], [False, True])
        last = proxy.calls[-1]
        check("proxy: the close is seen when it happens, not at the next piece",
              last.closed is not None and 0 <= last.closed - closing < gap / 2, True)
        check("proxy: the piece read before the close", last.last_piece is not None
              and last.last_piece < closing, True)
    finally:
        proxy.server.shutdown()
        upstream.shutdown()


def selftest() -> None:
    """The pure pieces, as tables of fixtures: accept rules, UTF-16 positions, busy time,
    the oracle's answers."""
    failures = []

    def check(name, got, want):
        if got != want:
            failures.append(f"{name}: got {got!r}, want {want!r}")

    o = Options()
    for sugg, target, partial, want in [
        ("foo(bar)", "foo(bar)\n    x", "word", 8),            # whole
        ("foo(bar)", "foo(baz)", "word", 4),                     # words: "foo("
        ("foo(bar)", "foo(baz)", "none", 0),
        ("a.b", "a.c", "word", 0),                               # "a." is under min_accept
        ("x = 1\ny = 2", "x = 1\ny = 3", "line", 5),            # the first line
        ("x = 1\ny = 2", "x = 1\ny = 3", "word", 10),           # lines, then words: "x = 1\ny = "
        ("return x", "return y", "line", 0),                      # no whole line matches
        ("ab", "ab", "word", 0),                                  # whole but under min_accept
    ]:
        check(f"accept_length({sugg!r}, {target!r}, {partial})",
              accept_length(sugg, target, Options(partial=partial)), want)
    d = Doc("file:///x", "a😀b\n漢字x\r\nz")
    for offset, want in [(0, (0, 0)), (2, (0, 3)), (3, (0, 4)), (6, (1, 2)), (8, (1, 4)), (9, (2, 0))]:
        pos = d.position(offset)
        check(f"position({offset})", (pos["line"], pos["character"]), want)
        check(f"offset(position({offset}))", d.offset(pos), offset)
    change = d.replace(2, 2, "é")
    check("replace", (d.text[:4], d.version, change["range"]["start"]), ("a😀éb", 1, {"line": 0, "character": 3}))
    calls = [Call("/infill", 0.0, 1.0), Call("/infill", 0.5, 2.0), Call("/infill", 3.0, None)]
    check("busy_seconds", busy_seconds(calls, 3.5), 2.5)
    for body, want in [("ab\ncd\nef", 5), ("abcdef\ng", 6), ("abc", -1)]:
        check(f"line_end_near_middle({body!r})", line_end_near_middle(body), want)
    config = new_user_config("http://h/v1", "openai", ['completion.prefetch="off"'])
    check("a --set value in the config", tomllib.loads(config)["completion"], {"prefetch": "off"})
    try:
        new_user_config("http://h/v1", "openai", ["completion.prefetch=off"])
        check("an unquoted --set string stops the bench", "no error", "SystemExit")
    except SystemExit:
        pass
    for stat, want in [
        ("7370 (llama-server) S 1 7370 7370 0 -1 4194560 1 0 0 0 12000 164 0 0 20 0 5", 121.64),
        ("42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0", 0.1),     # a name with ") "
    ]:
        check(f"cpu_seconds({stat[:24]!r})", cpu_seconds(stat, 100), want)
    for data, want in [
        (b'data: {"choices":[{"text":"a\\nb"}]}\n\ndata: {"choices":[{"text":"c"}]}\n\ndata: [DONE]\n', "a\nbc"),
        (b'{"response":"x\\n","done":false}\n{"response":"y","done":false}\n', "x\ny"),   # Ollama
        (b'data: {"content":"q\\n","stop":false}\n\ndata: {"content":"r', "q\n"),      # /infill, cut off
        (b'data: {"choices":[{"delta":{"content":"z"}}]}\n\n', "z"),                   # chat
        (b'{"choices":[{"text":"whole"}]}', "whole"),                                    # not streamed
    ]:
        check(f"streamed_text({data[:30]!r})", streamed_text(data), want)
    for data, want in [
        (b'{"content": "x", "timings": {"prompt_n": 7}}', {"prompt_n": 7}),            # whole
        (b'data: {"content":"x"}\n\ndata: {"content":"","timings":{"prompt_n":3}}\n\n', {"prompt_n": 3}),
        (b'data: {"choices":[{"text":"x"}]}\n\ndata: [DONE]\n\n', {}),            # none given
        (b'data: {"content":"x"', {}),                                             # cut off
    ]:
        check(f"answer_timings({data[:30]!r})", answer_timings(data), want)
    dbl = Double.__new__(Double)
    dbl.original, dbl.region = "def f(x):\n    return x + 1\n\nprint(f(2))\n", (14, 26)
    for prefix, stops, want in [
        ("def f(x):\n    ret", ["\n"], "urn x + 1"),
        ("def f(x):\n    return x + 1", [], ""),            # the region ends here
        ("def f(x):\n    ", ["\n"], "return x + 1"),
        ("nothing like it", [], ""),
    ]:
        check(f"double.answer({prefix!r})", dbl.answer(prefix, stops, 64), want)
    dbl.region = (14, 39)
    for prefix, stops, want in [
        ("def f(x):\n    return x + 1", [], "\n\nprint(f(2))"),  # a blank line, then code
        ("def f(x):\n    return x + 1\n", [], "\nprint(f(2))"),
    ]:
        check(f"double.answer({prefix!r})", dbl.answer(prefix, stops, 64), want)
    proxy_selftest(check)

    # Why a call was closed early: what came just before the close.
    for piece, acted, closed, want in [
        (10.0, [9.0], 10.002, "answer"),          # closed on the piece that ended its line
        (10.0, [10.05], 10.052, "user"),          # a keystroke after the last piece
        (None, [10.0], 10.003, "user"),           # given up while the model read the prompt
        (10.0, [9.99], 10.001, "answer"),         # typed along, then the line ended
        (10.0, [9.0], 11.0, "other"),             # neither (a timeout)
        (10.0, [10.5], 11.0, "other"),            # a keystroke long before the close
    ]:
        call = Call("/v1/completions", 9.0, end=closed + 0.04, aborted=True, last_piece=piece,
                    closed=closed)
        check(f"closed_by {piece} {acted} {closed}", closed_by(call, acted), want)
    print("\n".join(failures) or "selftest: all passed")
    sys.exit(1 if failures else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="type the regions against a model")
    where = r.add_argument_group("the model (one of)")
    where.add_argument("--llama", metavar="NAME", help="start scripts/llama-server --model NAME (qwen, qwen-0.5b)")
    where.add_argument("--url", help="a running llama-server")
    where.add_argument("--double", type=float, metavar="MS", help="the oracle double answering in MS ms")
    r.add_argument("--port", type=int, default=8071, help="for --llama (default 8071)")
    r.add_argument("--also", metavar="NAME",
                   help="with --llama: a second model (scripts/llama-server --model NAME on port+1) "
                        "after the first in the completion route, to see which one the router picks "
                        "by measured latency (its calls bypass the recording proxy)")
    r.add_argument("--keep-server", action="store_true", help="leave --llama's server running")
    r.add_argument("--systems", default="pilotfish,plain")
    r.add_argument("--provider", choices=["openai", "llamacpp"], default="openai",
                   help="openai: /v1/completions with the qwen template (the README); llamacpp: /infill")
    r.add_argument("--pilotfish", default=default_binary())
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a config experiment on top of the new user's config, e.g. completion.budget_ms=5000")
    r.add_argument("--regions", type=int, default=6)
    r.add_argument("--chars", type=int, default=100, help="characters per region (to a line end)")
    r.add_argument("--quick", action="store_true", help="3 regions of 60 characters (1–2 minutes)")
    r.add_argument("--seed", type=int, default=20261205)
    r.add_argument("--key-ms", type=float, default=70)
    r.add_argument("--jitter-ms", type=float, default=15)
    r.add_argument("--pause-ms", type=float, default=2000)
    r.add_argument("--react-ms", type=float, default=300, help="ghost text on screen this long before it is read")
    r.add_argument("--revisit", action="store_true",
                   help="type the files in pairs, half of each, then back to each for the rest "
                        "(the developer switching between two files)")
    r.add_argument("--open-ms", type=float, default=1000,
                   help="how long the developer looks at a file, once it opens at the region, before typing")
    r.add_argument("--min-accept", type=int, default=3)
    r.add_argument("--partial", choices=["none", "line", "word"], default="word")
    r.add_argument("--partial-command", action="store_true",
                   help="also run the item's command on a partial accept (VS Code does not)")
    r.add_argument("--json", metavar="FILE")
    r.add_argument("--keep", action="store_true", help="keep the work directory (workspace, pilotfish.log)")
    r.add_argument("--verbose", action="store_true", help="print the pauses, ghost texts and accepts as they happen")
    r.add_argument("--trace", metavar="FILE", help="append every model call (request, answer) as JSON lines")
    p = sub.add_parser("report", help="one table from saved --json runs")
    p.add_argument("files", nargs="+")
    sub.add_parser("selftest", help="check the pure pieces (accept rules, positions, busy time, the double)")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    elif args.cmd == "report":
        report(args.files)
    else:
        selftest()


if __name__ == "__main__":
    main()
