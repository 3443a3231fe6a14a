#!/usr/bin/env python3
"""Quality benchmark: fill-in-the-middle holes cut from real code we did not write, answered
by the bare model (a plain FIM prompt) and by Pilotfish's whole path (context, prompt,
post-processing), scored by exact match and edit similarity of the first line.

Python 3.11, standard library only.

    benches/quality.py holes [--per-lang 22] [--seed 20261122]     # (re)cut benches/quality_holes.json
    benches/quality.py run --url http://127.0.0.1:8012 \\
        --pilotfish /work/target-quality/release/pilotfish \\
        [--systems bare-infill,pf-llamacpp,bare-v1,pf-openai] [--limit N] [--only ID,ID] \\
        [--out results.json] [--diffs] [--cold]
    benches/quality.py report results.json [--diffs]                # tables from a saved run

The holes are stored with their text (prefix ≤ 1,500 chars, suffix ≤ 400 chars), so a run
does not need the source files. Each hole is a line of real code cut at a token boundary
after some non-whitespace; the expected completion is the rest of that line.

Systems (all against the same llama-server, temperature 0):
- `bare-infill`: POST /infill with input_prefix/input_suffix = the hole's stored prefix and
  suffix, n_predict 48; the first line of the answer.
- `bare-v1`: POST /v1/completions with the Qwen FIM prompt
  `<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`, max_tokens 48; the first line.
- `pf-llamacpp`: the real `pilotfish complete FILE:LINE:COL --budget-ms 120000` on a temp
  file holding prefix + suffix, with `provider = "llamacpp"`, `fim = "native"`.
- `pf-openai`: the same with `provider = "openai"`, `url = …/v1`, `fim = "qwen"`.

Latency: llama-server reuses prompts between the systems asked about one hole (prefix cache,
`--cache-reuse` KV shifting, its host-RAM prompt cache), so in a plain run the wall times
mostly reflect the call order (rotated per hole). For comparable latencies start the server
with `scripts/llama-server --model qwen -- --cache-ram 0` and pass `--cold`: every call is
preceded by an unrelated one-line prompt, so it reads its whole prompt. KV shifting also
changes the numerics of some `/v1/completions` answers; `--cold` avoids that too.

The bare systems send `stop: ["\\n"]`: at temperature 0 the tokens up to the first line break
are the same with or without it, so the first line is unchanged; it only saves generating
the rest of 48 tokens that the score throws away.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import threading
import tokenize
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOLES = HERE / "quality_holes.json"

MAX_PREFIX = 1500
MAX_SUFFIX = 400
N_PREDICT = 48
BUDGET_MS = 120_000

HOME = Path.home()
NM = Path("/work/main/.testbed/vscode/node_modules")
NM_VSCODE = NM / "code-server/lib/vscode/node_modules"

# Where the code comes from: (language, package label, license, root, glob patterns).
# Only files that exist on the machine count; the holes file records what was used.
def _crate(name: str) -> Path:
    found = sorted(glob.glob(str(HOME / f".cargo/registry/src/*/{name}-[0-9]*")))
    return Path(found[-1]) if found else Path("/nonexistent")


SOURCES = [
    # Python: CPython's standard library as Debian ships it (PSF License).
    ("python", "cpython-stdlib", "PSF-2.0", Path("/usr/lib/python3.11"),
     ["*.py", "json/*.py", "email/*.py", "asyncio/*.py", "http/*.py", "logging/*.py",
      "concurrent/futures/*.py", "importlib/*.py", "xml/etree/*.py", "urllib/*.py",
      "collections/*.py", "unittest/*.py"]),
    # Rust: crates from the cargo registry (all MIT OR Apache-2.0, MIT for some).
    ("rust", "serde", "MIT OR Apache-2.0", _crate("serde"), ["src/**/*.rs"]),
    ("rust", "regex", "MIT OR Apache-2.0", _crate("regex"), ["src/**/*.rs"]),
    ("rust", "tokio", "MIT", _crate("tokio"), ["src/**/*.rs"]),
    ("rust", "hyper", "MIT", _crate("hyper"), ["src/**/*.rs"]),
    ("rust", "bytes", "MIT", _crate("bytes"), ["src/**/*.rs"]),
    ("rust", "ropey", "MIT", _crate("ropey"), ["src/**/*.rs"]),
    ("rust", "clap_builder", "MIT OR Apache-2.0", _crate("clap_builder"), ["src/**/*.rs"]),
    ("rust", "toml", "MIT OR Apache-2.0", _crate("toml"), ["src/**/*.rs"]),
    ("rust", "anyhow", "MIT OR Apache-2.0", _crate("anyhow"), ["src/**/*.rs"]),
    ("rust", "tracing", "MIT", _crate("tracing"), ["src/**/*.rs"]),
    # JavaScript / TypeScript: npm packages installed for code-server.
    ("javascript", "express", "MIT", NM / "express", ["lib/**/*.js"]),
    ("javascript", "semver", "ISC", NM / "semver", ["classes/*.js", "functions/*.js", "ranges/*.js", "internal/*.js"]),
    ("javascript", "js-yaml", "MIT", NM / "js-yaml", ["dist/js-yaml.js"]),
    ("javascript", "ws", "MIT", NM / "ws", ["lib/*.js"]),
    ("javascript", "qs", "BSD-3-Clause", NM / "qs", ["lib/*.js"]),
    ("javascript", "send", "MIT", NM / "send", ["index.js"]),
    ("javascript", "body-parser", "MIT", NM / "body-parser", ["lib/**/*.js"]),
    ("javascript", "http-proxy", "MIT", NM / "http-proxy", ["lib/**/*.js"]),
    ("javascript", "source-map", "BSD-3-Clause", NM / "source-map", ["lib/*.js"]),
    ("typescript", "zod", "MIT", NM_VSCODE / "@vscode/sandbox-runtime/node_modules/zod",
     ["src/v4/core/*.ts", "src/v4/classic/*.ts", "src/v3/*.ts"]),
    ("typescript", "@xterm/xterm", "MIT", NM_VSCODE / "@xterm/xterm", ["src/common/**/*.ts", "src/browser/**/*.ts"]),
    ("typescript", "limiter", "MIT", NM / "limiter", ["src/*.ts"]),
    ("typescript", "@coder/logger", "MIT", NM / "@coder/logger", ["src/*.ts"]),
]

# The three language groups of the report; TypeScript counts with JavaScript.
GROUP = {"python": "python", "rust": "rust", "javascript": "js/ts", "typescript": "js/ts"}
EXT = {"python": ".py", "rust": ".rs", "javascript": ".js", "typescript": ".ts"}

TOKEN = re.compile(
    r"""\s+
    | [A-Za-z_$][A-Za-z0-9_$]*
    | \d[\w.]*
    | "(?:\\.|[^"\\])*"
    | '(?:\\.|[^'\\])'           # a char literal; longer '…' strings below per language
    | `[^`]*`
    | ==|!=|<=|>=|->|=>|::|&&|\+\+|--|\|\||\+=|-=|\*=|/=|\.\.\.|\.\.|\*\*|<<|>>|\?\?|\?\.
    | .""",
    re.VERBOSE,
)
SQ_STRING = re.compile(r"'(?:\\.|[^'\\])*'")

TRIVIAL = re.compile(r"^[\s\)\]\}\(\[\{;,:]*$")


def tokens(line: str, language: str) -> list[str]:
    out = []
    i = 0
    while i < len(line):
        if line[i] == "'" and language != "rust":
            m = SQ_STRING.match(line, i)
            if m:
                out.append(m.group())
                i = m.end()
                continue
        m = TOKEN.match(line, i)
        out.append(m.group())
        i = m.end()
    return out


def python_string_lines(text: str) -> set[int]:
    """0-based lines that lie inside a multi-line string (docstrings), or hold only one."""
    inside: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside.update(range(tok.start[0] - 1, tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set(range(len(text.split("\n"))))
    return inside


def c_comment_lines(lines: list[str]) -> set[int]:
    inside: set[int] = set()
    in_block = False
    for i, line in enumerate(lines):
        s = line.strip()
        if in_block:
            inside.add(i)
            if "*/" in s:
                in_block = False
            continue
        if s.startswith("/*"):
            inside.add(i)
            in_block = "*/" not in s
    return inside


def eligible_lines(text: str, language: str) -> list[int]:
    lines = text.split("\n")
    skip = python_string_lines(text) if language == "python" else c_comment_lines(lines)
    out = []
    for i, line in enumerate(lines):
        s = line.strip()
        if i < 8 or i in skip or len(s) < 12 or len(line) > 120:
            continue
        if s.startswith(("#", "//", "*", "/*", "\"\"\"", "'''", "@", "#[", "#!")):
            continue
        if TRIVIAL.match(s):
            continue
        if not any(c.isalpha() for c in s):
            continue
        if has_trailing_comment(line, language) or not cut_points(line, language):
            continue
        out.append(i)
    return out


def has_trailing_comment(line: str, language: str) -> bool:
    """A comment after code (outside strings): its text is prose, not code to predict."""
    toks = tokens(line, language)
    if language == "python":
        return "#" in toks
    return any(a == "/" and b in ("/", "*") for a, b in zip(toks, toks[1:]))


def cut_points(line: str, language: str) -> list[int]:
    """Token boundaries with non-whitespace before (past the indentation) and after."""
    points = []
    at = 0
    for tok in tokens(line, language)[:-1]:
        at += len(tok)
        before, after = line[:at], line[at:]
        if before.strip() and after.strip():
            points.append(at)
    return points


def make_holes(per_lang: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    by_group: dict[str, list[tuple]] = {}
    for language, package, license_, root, patterns in SOURCES:
        files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
        files = [f for f in files if "test" not in f.name.lower() and not f.name.endswith(".d.ts")]
        if not files:
            print(f"warning: no files for {package} under {root}", file=sys.stderr)
            continue
        by_group.setdefault(GROUP[language], []).append((language, package, license_, root, files))
    holes = []
    for group in ["python", "rust", "js/ts"]:
        packages = by_group.get(group, [])
        order = list(range(len(packages)))
        rng.shuffle(order)
        got = 0
        used_files: set[Path] = set()
        attempts = 0
        while got < per_lang and attempts < per_lang * 50:
            attempts += 1
            language, package, license_, root, files = packages[order[attempts % len(order)]]
            path = rng.choice(files)
            if path in used_files:
                continue
            text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
            lines = text.split("\n")
            if len(lines) < 30 or sum(map(len, lines)) / len(lines) > 100:
                continue  # tiny or minified
            candidates = eligible_lines(text, language)
            if not candidates:
                continue
            i = rng.choice(candidates)
            line = lines[i].rstrip()
            cut = rng.choice(cut_points(line, language))
            line_start = sum(len(l) + 1 for l in lines[:i])
            cursor = line_start + cut
            expected = line[cut:]
            # prefix: whole lines before (≤ MAX_PREFIX chars) + the cut line's head
            head = line[:cut]
            before = text[:line_start]
            room = MAX_PREFIX - len(head)
            if len(before) > room:
                start = len(before) - room
                nl = before.find("\n", start)
                before = before[nl + 1:] if nl >= 0 else ""
            prefix = before + head
            # suffix: the line break and whole lines after (≤ MAX_SUFFIX chars)
            after = text[line_start + len(lines[i]):]
            if len(after) > MAX_SUFFIX:
                nl = after.rfind("\n", 0, MAX_SUFFIX)
                after = after[: nl + 1] if nl > 0 else after[:MAX_SUFFIX]
            used_files.add(path)
            got += 1
            holes.append({
                "id": f"{group.replace('/', '')}-{got:02d}",
                "language": language,
                "package": package,
                "license": license_,
                "source": str(path).replace(str(HOME), "~"),
                "line": i + 1,
                "col": cut + 1,
                "cursor_offset": cursor,
                "prefix": prefix,
                "suffix": after,
                "expected": expected,
            })
    return holes


# ---------------------------------------------------------------------------------------
# Running

def post(url: str, body: dict, timeout: float = 600) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip()


def run_bare_infill(url: str, hole: dict) -> tuple[str, str]:
    out = post(f"{url}/infill", {
        "input_prefix": hole["prefix"], "input_suffix": hole["suffix"], "input_extra": [],
        "n_predict": N_PREDICT, "temperature": 0.0, "stop": ["\n"], "cache_prompt": True,
    })
    return out["content"], "", {"timings": out.get("timings", {})}


def run_bare_v1(url: str, hole: dict) -> tuple[str, str]:
    prompt = f"<|fim_prefix|>{hole['prefix']}<|fim_suffix|>{hole['suffix']}<|fim_middle|>"
    out = post(f"{url}/v1/completions", {
        "prompt": prompt, "max_tokens": N_PREDICT, "temperature": 0.0, "stop": ["\n"],
    })
    return out["choices"][0]["text"], "", {"timings": out.get("timings", {})}


class Recorder:
    """A pass-through HTTP proxy between pilotfish and llama-server that keeps each model
    call's request body and raw answer, so a hole where pilotfish differs from the bare
    model can be explained (its prompt, the model's raw text, then post-processing)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.calls: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self, method: str):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                req = urllib.request.Request(recorder.upstream + self.path, data=body, method=method,
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=BUDGET_MS / 1000 + 30) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                if method == "POST":
                    recorder.calls.append({"path": self.path, "request": body.decode(errors="replace") if body else "",
                                           "status": status, "response": data.decode(errors="replace")})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def raw_answer(self) -> str:
        """The model's raw text in the last model call."""
        for call in reversed(self.calls):
            try:
                out = json.loads(call["response"])
            except ValueError:
                continue
            if "content" in out:
                return out["content"]
            if out.get("choices"):
                return out["choices"][0].get("text", "")
        return ""


def pf_config(url: str, kind: str, workdir: Path) -> Path:
    if kind == "llamacpp":
        model = f'provider = "llamacpp"\nurl = "{url}"\nfim = "native"\n'
    else:
        model = f'provider = "openai"\nurl = "{url}/v1"\nfim = "qwen"\n'
    cfg = workdir / f"pilotfish-{kind}.toml"
    cfg.write_text(
        "[models.qwen]\n" + model +
        'model = "qwen2.5-coder-1.5b"\nlocal = true\ncontext_window = 4096\n'
        f"max_output_tokens = {N_PREDICT}\ntimeout_ms = {BUDGET_MS}\n\n"
        '[routes]\ncomplete = ["qwen"]\nexplain = ["qwen"]\nrefactor = ["qwen"]\nreview = ["qwen"]\n\n'
        f'[telemetry]\nusage_log = "{workdir}/usage.jsonl"\n'
    )
    return cfg


def run_pilotfish(binary: str, cfg: Path, workdir: Path, hole: dict, rec: Recorder) -> tuple[str, str, dict]:
    path = workdir / f"{hole['id']}{EXT[hole['language']]}"
    path.write_text(hole["prefix"] + hole["suffix"], encoding="utf-8")
    rec.calls.clear()
    lines = hole["prefix"].split("\n")
    line, col = len(lines), len(lines[-1]) + 1
    proc = subprocess.run(
        [binary, "--config", str(cfg), "complete", f"{path}:{line}:{col}",
         "--budget-ms", str(BUDGET_MS)],
        capture_output=True, text=True, timeout=BUDGET_MS / 1000 + 60,
        env={**os.environ, "PILOTFISH_LOG": "warn"},
    )
    text = proc.stdout
    if text.endswith("\n"):
        text = text[:-1]  # println!'s own line break
    note = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    if proc.returncode != 0:
        note = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    calls = [c for c in rec.calls if c["path"].endswith(("/infill", "/completions"))]
    model = {"model_raw": rec.raw_answer(), "model_calls": len(calls)}
    if calls:
        model["request"] = json.loads(calls[-1]["request"])
        try:
            model["timings"] = json.loads(calls[-1]["response"]).get("timings", {})
        except ValueError:
            pass
    return text, note, model


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def edit_sim(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def with_raw_rows(results: dict) -> tuple[list[str], list[dict]]:
    """Adds, for each pilotfish system, a pseudo-system `<name>:raw`: the first line of the
    model's raw answer to pilotfish's own prompt, before post-processing. Comparing it with
    the bare model isolates the prompt/context; comparing it with pilotfish isolates the
    post-processing."""
    systems = list(results["systems"])
    rows = results["rows"]
    for system in results["systems"]:
        if not system.startswith("pf-"):
            continue
        name = f"{system}:raw"
        systems.insert(systems.index(system) + 1, name)
        for r in rows:
            a = r["answers"].get(system)
            if a is None or "model_raw" not in a:
                continue
            line = first_line(a["model_raw"])
            exp = r["expected"].rstrip()
            r["answers"][name] = {"raw": a["model_raw"], "first_line": line, "exact": line == exp,
                                  "sim": edit_sim(line, exp), "seconds": a["seconds"], "note": ""}
    return systems, rows


def report(results: dict, diffs: bool) -> str:
    systems, rows = with_raw_rows(results)
    out = []
    out.append("| system | group | n | exact match | edit similarity | empty | errors | latency p50 | latency p95 |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for system in systems:
        for group in ["python", "rust", "js/ts", "all"]:
            sel = [r for r in rows if system in r["answers"] and (group == "all" or GROUP[r["language"]] == group)]
            if not sel:
                continue
            em = [r["answers"][system]["exact"] for r in sel]
            es = [r["answers"][system]["sim"] for r in sel]
            lat = [r["answers"][system]["seconds"] for r in sel]
            empty = sum(1 for r in sel if not r["answers"][system]["first_line"].strip())
            errors = sum(1 for r in sel if r["answers"][system]["note"].startswith(("error", "exit")))
            name = f"**{group}**" if group == "all" else group
            out.append(f"| {system} | {name} | {len(sel)} | {100 * sum(em) / len(em):.1f}% "
                       f"({sum(em)}) | {statistics.mean(es):.3f} | {empty} | {errors} "
                       f"| {pct(lat, .5):.2f} s | {pct(lat, .95):.2f} s |")
    pairs = [("bare-infill", "pf-llamacpp"), ("bare-v1", "pf-openai")]
    if diffs:
        out.append("")
        for a, b in pairs:
            if a not in systems or b not in systems:
                continue
            out.append(f"Holes where {a} and {b} differ:")
            for r in rows:
                x, y = r["answers"].get(a), r["answers"].get(b)
                if x and y and x["first_line"] != y["first_line"]:
                    out.append(f"- {r['id']} ({r['source']}:{r['line']}) expected {r['expected']!r}")
                    out.append(f"    {a}: {x['first_line']!r} (exact {x['exact']}, sim {x['sim']:.2f}) raw {x['raw'][:120]!r}")
                    out.append(f"    {b}: {y['first_line']!r} (exact {y['exact']}, sim {y['sim']:.2f}) {y.get('note', '')}")
                    if "model_raw" in y:
                        out.append(f"      model's raw answer to {b}: {y['model_raw'][:120]!r} ({y['model_calls']} call(s))")
    return "\n".join(out)


def run(args) -> None:
    holes = json.loads(HOLES.read_text())["holes"]
    if args.only:
        want = set(args.only.split(","))
        holes = [h for h in holes if h["id"] in want]
    if args.limit:
        # a few of each group
        per = {}
        keep = []
        for h in holes:
            g = GROUP[h["language"]]
            if per.get(g, 0) < args.limit:
                per[g] = per.get(g, 0) + 1
                keep.append(h)
        holes = keep
    systems = args.systems.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-quality-"))
    runners = {}
    rec = Recorder(args.url)
    for s in systems:
        if s == "bare-infill":
            runners[s] = lambda h: run_bare_infill(args.url, h)
        elif s == "bare-v1":
            runners[s] = lambda h: run_bare_v1(args.url, h)
        elif s in ("pf-llamacpp", "pf-openai"):
            cfg = pf_config(rec.url, s.removeprefix("pf-"), workdir)
            runners[s] = (lambda c: lambda h: run_pilotfish(args.pilotfish, c, workdir, h, rec))(cfg)
        else:
            sys.exit(f"unknown system {s}")
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rows = []
    for n, hole in enumerate(holes):
        row = {k: hole[k] for k in ("id", "language", "source", "line", "col", "expected")}
        row["answers"] = {}
        # Rotate the order per hole, so that no system always gets the warm prompt cache.
        order = systems[n % len(systems):] + systems[: n % len(systems)]
        for s in order:
            if args.cold:
                # Replace llama-server's cached prompt, so that this call reads its whole prompt.
                post(f"{args.url}/v1/completions", {"prompt": f"# flush {n} {s}\n", "max_tokens": 1})
            t0 = time.monotonic()
            try:
                raw, note, extra = runners[s](hole)
            except Exception as e:  # noqa: BLE001 — a failed request scores as empty
                raw, note, extra = "", f"error: {e}", {}
            seconds = time.monotonic() - t0
            line = first_line(raw)
            exp = hole["expected"].rstrip()
            row["answers"][s] = {
                "raw": raw, "first_line": line, "exact": line == exp,
                "sim": edit_sim(line, exp), "seconds": seconds, "note": note,
                **extra,
            }
        row["order"] = order
        rows.append(row)
        print(f"[{n + 1}/{len(holes)}] {hole['id']} expected {hole['expected']!r}", file=sys.stderr)
        for s in systems:
            a = row["answers"][s]
            print(f"    {s:12} {'OK ' if a['exact'] else '   '}{a['seconds']:6.2f}s {a['first_line']!r} {a['note'][:100]}",
                  file=sys.stderr)
        if args.out:
            Path(args.out).write_text(json.dumps({"systems": systems, "rows": rows}, indent=1))
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    results = {
        "systems": systems, "rows": rows, "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_before": load_before, "load_after": load_after,
        "command": " ".join(sys.argv),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"started {started}, load {' '.join(load_before)}; finished {results['finished']}, load {' '.join(load_after)}")
    print(report(results, args.diffs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("holes")
    h.add_argument("--per-lang", type=int, default=22)
    h.add_argument("--seed", type=int, default=20261122)
    r = sub.add_parser("run")
    r.add_argument("--url", default="http://127.0.0.1:8012")
    r.add_argument("--pilotfish", default="/work/target-quality/release/pilotfish")
    r.add_argument("--systems", default="bare-infill,pf-llamacpp")
    r.add_argument("--limit", type=int, default=0, help="at most N holes per language group")
    r.add_argument("--only", default="")
    r.add_argument("--out", default="")
    r.add_argument("--diffs", action="store_true")
    r.add_argument("--cold", action="store_true",
                   help="flush llama-server's prompt cache before every call (for latency)")
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--diffs", action="store_true")
    args = ap.parse_args()
    if args.cmd == "holes":
        holes = make_holes(args.per_lang, args.seed)
        HOLES.write_text(json.dumps({
            "about": "FIM holes for benches/quality.py: each is a line of real third-party code cut at a "
                     "token boundary; `expected` is the rest of the line. `source` is where it was read "
                     "(on the machine that cut them), `license` that file's license. Cut by "
                     f"`benches/quality.py holes --per-lang {args.per_lang} --seed {args.seed}`.",
            "seed": args.seed,
            "holes": holes,
        }, indent=1, ensure_ascii=False) + "\n")
        from collections import Counter
        print(Counter(h["language"] for h in holes), f"-> {HOLES}")
    elif args.cmd == "run":
        run(args)
    else:
        print(report(json.loads(Path(args.results).read_text()), args.diffs))


if __name__ == "__main__":
    main()
