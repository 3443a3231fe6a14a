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
    benches/quality.py siblings [--per-hole 2] [--seed 20261205]    # (re)cut quality_siblings.json
    benches/quality.py xfile-holes [--per-lang 22] [--seed 20261205]  # (re)cut quality_holes_xfile.json

The holes are stored with their text (prefix ≤ 1,500 chars, suffix ≤ 400 chars), so a run
does not need the source files. `holes --max-prefix 4000 --out benches/quality_holes_long.json`
cuts the same holes with a wider prefix (for the prefix-window question), and `run --holes`
reads such a file. Each hole is a line of real code cut at a token boundary
after some non-whitespace; the expected completion is the rest of that line.

Systems (all against the same llama-server, temperature 0):
- `bare-infill`: POST /infill with input_prefix/input_suffix = the hole's stored prefix and
  suffix, n_predict 48; the first line of the answer.
- `bare-v1`: POST /v1/completions with the Qwen FIM prompt
  `<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`, max_tokens 48; the first line.
- `pf-llamacpp`: the real `pilotfish complete FILE:LINE:COL --budget-ms 120000` on a temp
  file holding prefix + suffix, with `provider = "llamacpp"`, `fim = "native"`.
- `pf-openai`: the same with `provider = "openai"`, `url = …/v1`, `fim = "qwen"`.

Prompt layouts tried for what a slow model re-reads per keystroke (BENCHMARKS.md, "What a
request re-reads"), all `/v1/completions` with the Qwen template like `bare-v1`:
- `bare-v1-line`: the text typed on the cursor's line after `<|fim_middle|>`, as if the model
  had written it (typing along the line then changes only the prompt's end);
  `bare-v1-word`: the same with the line's indentation kept in the prefix.
- `bare-v1-heal`: the line up to its last word after `<|fim_middle|>`; the model must write
  that word again (its answer counts only if it starts with it, which is then cut off).
- `bare-v1-sfxN`: the plain layout with the suffix cut as Pilotfish cuts it, to the rest of
  the cursor's line and the whole lines within N characters; `bare-v1-preN`: the prefix cut
  to the whole lines within its last N characters (and the cursor's line);
  `bare-v1-preN-sfxM` both cuts.

Context from other files (the outlines of other open files, and the recent-context ring of
chunks the user just touched): the holes are single files, so two more inputs exist.
- `--siblings benches/quality_siblings.json`: for each of the 66 holes, two other files of its
  package (its own directory first), each edited at a random code line — context that is
  usually beside the point, as most of what a developer touched is. Does it cost exact match?
- `--holes benches/quality_holes_xfile.json`: 66 cross-file holes (22 a group), whose
  expected rest of the line names something defined in another file of the package (at most
  three files define it; not a builtin or an everyday method name) and appearing nowhere in
  the hole's own stored text; each comes with that file, edited at the definition (the
  developer looked up what they are about to call), and another file of the package edited
  at a random code line, in random order. Does the context help where it should?
The `lsp-*` systems drive the release binary over LSP as an editor would, with the same
config as `pf-*` plus `[completion] prefetch = "off"`, `warm_up = false` (background calls
that change no answer): initialize with the hole's package as the workspace, open each
sibling (at most 8,000 characters of it around its spot) and edit it at its spot (its last
character deleted and typed again: the text is unchanged, the server sees an edit there),
open the hole's file, and ask one `textDocument/inlineCompletion` at the hole (triggerKind
Invoked), waited for:
- `lsp-llamacpp` / `lsp-openai`: `recent_chunks = 0` — other files' outlines only (to
  `/infill`'s `input_extra`; in the qwen template's repository layout);
- `lsp-llamacpp-ring` / `lsp-openai-ring`: `recent_chunks = 4` — the outlines, then the
  chunks of the ring.
The `pf-*` systems (the command line, one file) are the same model with no other files: what
Pilotfish sent a template model before the ring, whatever was open. The report adds the
prompt's tokens (llama-server's `prompt_n + cache_n`, and `prompt_n`: those it had to read),
and with `--repeat` the latency of the same request asked again at once (its prompt cached).

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
import queue
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
SIBLINGS = HERE / "quality_siblings.json"
XFILE_HOLES = HERE / "quality_holes_xfile.json"

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


def make_holes(per_lang: int, seed: int, max_prefix: int = MAX_PREFIX) -> list[dict]:
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
            cut = rng.choice(cut_points(lines[i].rstrip(), language))
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
                **cut_hole(text, i, cut, language, max_prefix),
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


def complete_v1(url: str, prefix: str, suffix: str, middle: str = "") -> tuple[str, str, dict]:
    """The Qwen FIM prompt `<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>M` (M: the start of
    the middle, if any) to `/v1/completions`: the answer to its first line break."""
    prompt = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{middle}"
    out = post(f"{url}/v1/completions", {
        "prompt": prompt, "max_tokens": N_PREDICT, "temperature": 0.0, "stop": ["\n"],
    })
    return out["choices"][0]["text"], "", {"timings": out.get("timings", {})}


def run_bare_v1(url: str, hole: dict) -> tuple[str, str]:
    return complete_v1(url, hole["prefix"], hole["suffix"])


def split_line(prefix: str, keep_indent: bool) -> tuple[str, str]:
    """The prefix up to the start of the cursor's line (with its indentation, if
    `keep_indent`), and the rest of the line before the cursor."""
    start = prefix.rfind("\n") + 1
    if keep_indent:
        line = prefix[start:]
        start += len(line) - len(line.lstrip(" \t"))
    return prefix[:start], prefix[start:]


def run_bare_v1_line(url: str, hole: dict, keep_indent: bool) -> tuple[str, str]:
    before, line = split_line(hole["prefix"], keep_indent)
    return complete_v1(url, before, hole["suffix"], line)


def heal_cut(typed: str) -> int:
    """Where a healed middle ends: before the last space that starts a word (a token boundary
    in byte-level BPE, which attaches a space to the word after it), else at the start."""
    for i in range(len(typed) - 1, 0, -1):
        if typed[i] in " \t" and not typed[i + 1:i + 2].isspace() and i + 1 < len(typed):
            return i
    return 0


def suffix_lines(suffix: str, chars: int) -> str:
    """The suffix cut as Pilotfish's window cuts it: the rest of the cursor's line, then the
    whole lines that fit in `chars`."""
    own = suffix.find("\n") + 1 if "\n" in suffix else len(suffix)
    if len(suffix) <= chars:
        return suffix
    end = suffix.rfind("\n", 0, chars + 1) + 1
    return suffix[:max(end, own)]


def run_bare_v1_suffix(url: str, hole: dict, chars: int) -> tuple[str, str]:
    return complete_v1(url, hole["prefix"], suffix_lines(hole["suffix"], chars))


def run_bare_v1_prefix(url: str, hole: dict, chars: int, suffix_chars: int | None = None
                       ) -> tuple[str, str]:
    prefix = hole["prefix"]
    if len(prefix) > chars:
        # Whole lines, as Pilotfish's window starts at a line (and the cursor's line whole).
        start = prefix.find("\n", len(prefix) - chars) + 1
        prefix = prefix[start:] if 0 < start <= prefix.rfind("\n") + 1 else prefix[prefix.rfind("\n") + 1:]
    suffix = hole["suffix"] if suffix_chars is None else suffix_lines(hole["suffix"], suffix_chars)
    return complete_v1(url, prefix, suffix)


def run_bare_v1_heal(url: str, hole: dict) -> tuple[str, str]:
    before, line = split_line(hole["prefix"], True)
    cut = heal_cut(line)
    tail = line[cut:]
    text, _, meta = complete_v1(url, before, hole["suffix"], line[:cut])
    return (text[len(tail):] if text.startswith(tail) else ""), "", meta


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


def pf_config(url: str, kind: str, workdir: Path, completion: str = "", name: str = "") -> Path:
    if kind == "llamacpp":
        model = f'provider = "llamacpp"\nurl = "{url}"\nfim = "native"\n'
    else:
        model = f'provider = "openai"\nurl = "{url}/v1"\nfim = "qwen"\n'
    cfg = workdir / f"pilotfish-{name or kind}.toml"
    cfg.write_text(
        "[models.qwen]\n" + model +
        'model = "qwen2.5-coder-1.5b"\nlocal = true\ncontext_window = 4096\n'
        f"max_output_tokens = {N_PREDICT}\ntimeout_ms = {BUDGET_MS}\n\n"
        '[routes]\ncomplete = ["qwen"]\nexplain = ["qwen"]\nrefactor = ["qwen"]\nreview = ["qwen"]\n\n'
        + (f"[completion]\n{completion}\n" if completion else "") +
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


# ---------------------------------------------------------------------------------------
# Other files: siblings of a hole, cross-file holes, and the editor that opens them

RING_CHUNKS = 4          # completion.recent_chunks for the `-ring` systems (the default)
SIBLING_CHARS = 8000     # how much of a sibling file the simulated editor opens
# The LSP systems: (provider kind, completion.recent_chunks). Over LSP the engine prefetches
# the suggestion after the shown one and warms the model server's cache at each edited place;
# both cost the CPU and change no answer here: off.
LSP_SYSTEMS = {
    "lsp-llamacpp": ("llamacpp", 0),
    "lsp-llamacpp-ring": ("llamacpp", RING_CHUNKS),
    "lsp-openai": ("openai", 0),
    "lsp-openai-ring": ("openai", RING_CHUNKS),
}
DEF_PATTERNS = {
    "python": [r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)", r"^\s*class\s+([A-Za-z_]\w*)",
               r"^([A-Za-z_]\w*)\s*="],
    "rust": [r"\b(?:fn|struct|enum|trait|type|union|const|static|mod)\s+([A-Za-z_]\w*)",
             r"macro_rules!\s*([A-Za-z_]\w*)"],
    "javascript": [r"\bfunction\s*\*?\s*([A-Za-z_$][\w$]*)", r"\bclass\s+([A-Za-z_$][\w$]*)",
                   r"^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=",
                   r"^\s*(?:static\s+|async\s+)*([A-Za-z_$][\w$]*)\s*\([^)]*\)\s*\{\s*$"],
}
DEF_PATTERNS["typescript"] = DEF_PATTERNS["javascript"] + [
    r"\b(?:interface|type|enum)\s+([A-Za-z_$][\w$]*)"]
NOT_NAMES = {"self", "this", "super", "None", "True", "False", "null", "undefined", "return",
             "function", "while", "switch", "catch", "async", "await", "match", "where", "impl",
             "constructor", "const", "static", "else", "elif", "pass", "break", "continue",
             "yield", "lambda", "typeof", "instanceof", "delete", "Self", "Some", "Option",
             "Result", "String", "usize", "isize"}
# Names so common that another file defining one says nothing about the hole: Python's
# builtins and the methods of its builtin types, the standard traits and methods of Rust,
# JavaScript's keywords and everyday properties.
COMMON_NAMES = {
    "python": set(dir(__builtins__)) | {n for t in (list, dict, str, set, bytes, object, int)
                                        for n in dir(t)} | {"append", "clear", "close", "info",
                                                            "load", "test", "release", "start"},
    "rust": {"Error", "Write", "Read", "start", "is_empty", "len", "new", "from", "into",
             "clone", "fmt", "next", "as_ref", "as_mut", "default", "write", "read", "close",
             "get", "set", "iter", "push", "insert", "remove", "Ok", "Err"},
    "javascript": {"length", "slice", "push", "type", "value", "string", "target", "json",
                   "parse", "test", "implements", "prototype", "apply", "call", "bind",
                   "resume", "emit", "write", "then", "keys", "values", "entries", "number",
                   "boolean", "object", "unknown", "extends", "readonly", "private", "public",
                   "protected", "interface", "default", "export", "import", "require",
                   "module", "exports", "patch", "start", "close", "send", "error", "message"},
}
COMMON_NAMES["typescript"] = COMMON_NAMES["javascript"]
IDENT = re.compile(r"[A-Za-z_$][\w$]*")


def package_files(package: str) -> tuple[Path, list[Path]]:
    """The root and source files (no tests, no .d.ts) of a SOURCES package."""
    for _language, name, _license, root, patterns in SOURCES:
        if name == package:
            files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
            return root, [f for f in files
                          if "test" not in f.name.lower() and not f.name.endswith(".d.ts")]
    return Path("/nonexistent"), []


def source_path(hole: dict) -> Path:
    return Path(hole["source"].replace("~", str(HOME), 1))


def relative_in(path: Path, root: Path) -> str:
    """A file's path inside its package (a crate's `src/...` even across crate versions)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        parts = path.parts
        return str(Path(*parts[parts.index("src"):])) if "src" in parts else path.name


def window_around(text: str, spot: int) -> tuple[str, int]:
    """At most SIBLING_CHARS of whole lines of `text` around 0-based line `spot`: the text
    and the spot's line in it."""
    lines = text.split("\n")
    if len(text) <= SIBLING_CHARS:
        return text, spot
    lo, hi, size = spot, spot + 1, len(lines[spot]) + 1
    while True:
        grew = False
        for side in ("lo", "hi"):
            if side == "lo" and lo > 0 and size + len(lines[lo - 1]) + 1 <= SIBLING_CHARS:
                lo -= 1
                size += len(lines[lo]) + 1
                grew = True
            if side == "hi" and hi < len(lines) and size + len(lines[hi]) + 1 <= SIBLING_CHARS:
                size += len(lines[hi]) + 1
                hi += 1
                grew = True
        if not grew:
            return "\n".join(lines[lo:hi]) + "\n", spot - lo


def read_source(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")


def sibling(path: Path, root: Path, language: str, spot: int | None, rng: random.Random,
            why: str) -> dict | None:
    """A file the simulated developer touched: opened, and edited at `spot` (a random code
    line when None)."""
    text = read_source(path)
    if spot is None:
        lines = eligible_lines(text, language)
        if not lines:
            return None
        spot = rng.choice(lines)
    window, at = window_around(text, spot)
    return {"path": relative_in(path, root), "language": language, "text": window,
            "spot": at, "why": why}


def make_siblings(holes: list[dict], per_hole: int, seed: int) -> dict:
    """For each hole, `per_hole` other files of its package (its own directory first),
    each touched at a random code line: context that is usually beside the point."""
    out = {}
    for hole in holes:
        rng = random.Random(f"{seed}-{hole['id']}")
        root, files = package_files(hole["package"])
        own = source_path(hole)
        own_rel = relative_in(own, root)
        others = [f for f in files if relative_in(f, root) != own_rel]
        same_dir = [f for f in others if f.parent.name == own.parent.name]
        pool = same_dir if len(same_dir) >= per_hole else others
        rng.shuffle(pool)
        chosen = []
        for f in pool:
            s = sibling(f, root, hole["language"], None, rng, "random")
            if s:
                chosen.append(s)
            if len(chosen) == per_hole:
                break
        out[hole["id"]] = chosen
    return out


def definitions(text: str, language: str) -> dict[str, int]:
    """Names defined in a file, with the 0-based line of their first definition."""
    found: dict[str, int] = {}
    patterns = [re.compile(p) for p in DEF_PATTERNS[language]]
    for i, line in enumerate(text.split("\n")):
        for pat in patterns:
            for m in pat.finditer(line):
                found.setdefault(m.group(1), i)
    return found


def xfile_packages() -> list[tuple[str, str, str, Path, list[Path]]]:
    """Multi-file packages for cross-file holes: CPython's subpackages (a directory each),
    and every crate and npm package of SOURCES."""
    out = []
    for language, package, license_, root, patterns in SOURCES:
        _, files = package_files(package)
        if package == "cpython-stdlib":
            for sub in ["json", "email", "asyncio", "http", "logging", "concurrent/futures",
                        "importlib", "xml/etree", "urllib", "collections", "unittest"]:
                sub_files = [f for f in files if f.parent == root / sub]
                if len(sub_files) >= 3:
                    out.append((language, f"cpython-stdlib/{sub}", license_, root, sub_files))
        elif len(files) >= 3:
            out.append((language, package, license_, root, files))
    return out


def make_xfile_holes(per_lang: int, seed: int) -> list[dict]:
    """Holes whose expected rest of line names something defined in another file of the
    package (at most 3 files define it) and nowhere in the hole's own file or its stored
    text. Each comes with the file defining it (touched at the definition) and another file
    of the package (touched at a random code line), in random order."""
    rng = random.Random(seed)
    by_group: dict[str, list] = {}
    for entry in xfile_packages():
        by_group.setdefault(GROUP[entry[0]], []).append(entry)
    holes = []
    for group in ["python", "rust", "js/ts"]:
        packages = by_group.get(group, [])
        indexes: dict[str, dict] = {}
        got, attempts, used = 0, 0, set()
        while packages and got < per_lang and attempts < per_lang * 400:
            attempts += 1
            language, package, license_, root, files = rng.choice(packages)
            if package not in indexes:
                index: dict[str, list[tuple[Path, int]]] = {}
                for f in files:
                    for name, line in definitions(read_source(f), language).items():
                        index.setdefault(name, []).append((f, line))
                indexes[package] = index
            index = indexes[package]
            path = rng.choice(files)
            if path in used:
                continue
            text = read_source(path)
            lines = text.split("\n")
            if len(lines) < 30 or sum(map(len, lines)) / len(lines) > 100:
                continue
            own = definitions(text, language)
            candidates = []
            for i in eligible_lines(text, language):
                line = lines[i].rstrip()
                for m in IDENT.finditer(line):
                    name = m.group()
                    if (len(name) < 5 or name in NOT_NAMES or name in COMMON_NAMES[language]
                            or name in own
                            or not 1 <= len({f for f, _ in index.get(name, [])}) <= 3):
                        continue
                    cuts = [c for c in cut_points(line, language) if c <= m.start()]
                    if cuts:
                        candidates.append((i, name, cuts))
            rng.shuffle(candidates)
            for i, name, cuts in candidates:
                line = lines[i].rstrip()
                cut = rng.choice(cuts)
                hole = cut_hole(text, i, cut, language)
                window = hole["prefix"] + hole["suffix"]
                if re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", window):
                    continue  # the file's own text already shows it
                def_file, def_line = rng.choice(index[name])
                others = [f for f in files if f not in (path, def_file)]
                if not others:
                    continue
                sibs = [sibling(def_file, root, language, def_line, rng, f"defines {name}")]
                for f in rng.sample(others, min(len(others), 8)):
                    s = sibling(f, root, language, None, rng, "random")
                    if s:
                        sibs.append(s)
                        break
                if len(sibs) < 2:
                    continue
                rng.shuffle(sibs)
                used.add(path)
                got += 1
                holes.append({
                    "id": f"x{group.replace('/', '')}-{got:02d}",
                    "language": language,
                    "package": package,
                    "license": license_,
                    "source": str(path).replace(str(HOME), "~"),
                    "path": relative_in(path, root),
                    "line": i + 1,
                    "col": cut + 1,
                    "name": name,
                    **hole,
                    "siblings": sibs,
                })
                break
    return holes


def cut_hole(text: str, i: int, cut: int, language: str, max_prefix: int = MAX_PREFIX) -> dict:
    """The stored text of a hole at line `i`, column `cut`: the whole lines before the cursor
    (≤ `max_prefix` chars) and the cut line's head, then the line break and whole lines after
    (≤ MAX_SUFFIX chars); the expected completion is the rest of the line."""
    lines = text.split("\n")
    line = lines[i].rstrip()
    line_start = sum(len(l) + 1 for l in lines[:i])
    head = line[:cut]
    before = text[:line_start]
    room = max_prefix - len(head)
    if len(before) > room:
        nl = before.find("\n", len(before) - room)
        before = before[nl + 1:] if nl >= 0 else ""
    after = text[line_start + len(lines[i]):]
    if len(after) > MAX_SUFFIX:
        nl = after.rfind("\n", 0, MAX_SUFFIX)
        after = after[: nl + 1] if nl > 0 else after[:MAX_SUFFIX]
    return {"cursor_offset": line_start + cut, "prefix": before + head, "suffix": after,
            "expected": line[cut:]}


class Lsp:
    def __init__(self, cmd: list[str], cwd: Path, env: dict, events: queue.Queue):
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.events = events
        self.write_lock = threading.Lock()
        self.next_id = 0
        self.replies: dict[int, queue.Queue] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _write(self, msg: dict) -> None:
        if msg.get("params", 0) is None:
            del msg["params"]
        data = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
        with self.write_lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
            self.proc.stdin.flush()

    def _read(self) -> None:
        f = self.proc.stdout
        while True:
            length = None
            while True:
                line = f.readline()
                if not line:
                    self.events.put(("exit", time.monotonic(), None))
                    return
                line = line.strip()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length is None:
                continue
            msg = json.loads(f.read(length))
            t = time.monotonic()
            if "method" in msg and "id" in msg:
                self._answer_server_request(msg)
                continue
            if "id" in msg and msg["id"] in self.replies:
                self.replies.pop(msg["id"]).put(msg)
                continue
            self.events.put(("lsp", t, msg))

    def _answer_server_request(self, msg: dict) -> None:
        method = msg["method"]
        result = None
        if method == "workspace/configuration":
            result = [None] * len(msg.get("params", {}).get("items", []))
        elif method == "window/showDocument":
            result = {"success": False}
        elif method == "workspace/applyEdit":
            result = {"applied": False}
        self._write({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def request(self, method: str, params: dict) -> int:
        self.next_id += 1
        self._write({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.next_id

    def call(self, method: str, params: dict, timeout: float = 30) -> dict:
        """A request whose answer the caller waits for (initialize, shutdown)."""
        self.next_id += 1
        box: queue.Queue = queue.Queue()
        self.replies[self.next_id] = box
        self._write({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return box.get(timeout=timeout)

    def notify(self, method: str, params: dict) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    def stop(self) -> None:
        try:
            self.call("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except (queue.Empty, OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def lsp_position(text: str, offset: int) -> dict:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return {"line": line, "character": utf16_len(text[start:offset])}


def run_pilotfish_lsp(binary: str, cfg: Path, workdir: Path, hole: dict, rec: Recorder
                      ) -> tuple[str, str, dict]:
    """Pilotfish over LSP, as an editor would drive it: the hole's siblings opened and each
    edited at its spot (the last character of the line deleted and typed again, so the text
    stays the same), then the hole's file opened and one inline completion asked at the hole,
    waited for."""
    package = hole["package"].replace("/", "_")
    root = workdir / "lsp" / hole["id"] / package
    rel = hole.get("path") or relative_in(source_path(hole), package_files(hole["package"])[0])
    files = [(s["path"], s["language"], s["text"], s["spot"]) for s in hole.get("siblings", [])]
    for path, _, text, _ in files + [(rel, hole["language"], hole["prefix"] + hole["suffix"], 0)]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    rec.calls.clear()
    events: queue.Queue = queue.Queue()
    lsp = Lsp([binary, "--config", str(cfg)], root, {**os.environ, "PILOTFISH_LOG": "warn"}, events)
    try:
        lsp.call("initialize", {
            "processId": os.getpid(), "rootUri": (root.as_uri()),
            "workspaceFolders": [{"uri": root.as_uri(), "name": package}],
            "capabilities": {"general": {"positionEncodings": ["utf-16"]}},
        })
        lsp.notify("initialized", {})
        for path, language, text, spot in files:
            uri = (root / path).as_uri()
            lsp.notify("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": language, "version": 1, "text": text}})
            line = text.split("\n")[spot]
            end = {"line": spot, "character": utf16_len(line)}
            last = line[-1:] if line else ""
            before = {"line": spot, "character": utf16_len(line[:-1]) if line else 0}
            lsp.notify("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": 2},
                "contentChanges": [{"range": {"start": before, "end": end}, "text": ""},
                                   {"range": {"start": before, "end": before}, "text": last}]})
        text = hole["prefix"] + hole["suffix"]
        uri = (root / rel).as_uri()
        lsp.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": hole["language"], "version": 1, "text": text}})
        answer = lsp.call("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri},
            "position": lsp_position(text, len(hole["prefix"])),
            "context": {"triggerKind": 1},
        }, timeout=BUDGET_MS / 1000 + 60)
        items = (answer.get("result") or {}).get("items") or []
        out, note = (items[0].get("insertText", "") if items else ""), ""
        if "error" in answer:
            note = f"error: {answer['error'].get('message', '')[:200]}"
    finally:
        lsp.stop()
    calls = [c for c in rec.calls if c["path"].endswith(("/infill", "/completions"))]
    model = {"model_raw": rec.raw_answer(), "model_calls": len(calls)}
    if calls:
        request = json.loads(calls[-1]["request"])
        model["request"] = request
        model["other_files"] = (len(request.get("input_extra") or [])
                                or max(0, request.get("prompt", "").count("<|file_sep|>") - 1))
        try:
            model["timings"] = json.loads(calls[-1]["response"]).get("timings", {})
        except ValueError:
            pass
    return out, note, model


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
        if not system.startswith(("pf-", "lsp-")):
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
    out.append("| system | group | n | exact match | edit similarity | empty | errors | latency p50 | latency p95 "
               "| prompt tokens p50 (read) | repeat p50 |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
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
            timings = [r["answers"][system].get("timings") or {} for r in sel]
            total = [t["prompt_n"] + t.get("cache_n", 0) for t in timings if "prompt_n" in t]
            read = [t["prompt_n"] for t in timings if "prompt_n" in t]
            tokens = f"{pct(total, .5):.0f} ({pct(read, .5):.0f})" if total else "–"
            again = [r["answers"][system]["repeat"]["seconds"] for r in sel
                     if "repeat" in r["answers"][system]]
            repeat = f"{pct(again, .5):.2f} s" if again else "–"
            out.append(f"| {system} | {name} | {len(sel)} | {100 * sum(em) / len(em):.1f}% "
                       f"({sum(em)}) | {statistics.mean(es):.3f} | {empty} | {errors} "
                       f"| {pct(lat, .5):.2f} s | {pct(lat, .95):.2f} s | {tokens} | {repeat} |")
    pairs = [("bare-infill", "pf-llamacpp"), ("bare-v1", "pf-openai"),
             ("bare-v1", "bare-v1-line"), ("bare-v1", "bare-v1-word"), ("bare-v1", "bare-v1-heal"),
             ("pf-llamacpp", "lsp-llamacpp"), ("pf-openai", "lsp-openai"),
             ("lsp-llamacpp", "lsp-llamacpp-ring"), ("lsp-openai", "lsp-openai-ring")]
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
    holes = json.loads(Path(args.holes).read_text())["holes"]
    if args.siblings:
        siblings = json.loads(Path(args.siblings).read_text())["siblings"]
        for h in holes:
            h["siblings"] = siblings.get(h["id"], [])
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
    args.pilotfish = str(Path(args.pilotfish).resolve())  # the LSP systems run in their workspace
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-quality-"))
    runners = {}
    rec = Recorder(args.url)
    for s in systems:
        if s == "bare-infill":
            runners[s] = lambda h: run_bare_infill(args.url, h)
        elif s == "bare-v1":
            runners[s] = lambda h: run_bare_v1(args.url, h)
        elif s in ("bare-v1-line", "bare-v1-word"):
            runners[s] = (lambda k: lambda h: run_bare_v1_line(args.url, h, k))(s.endswith("word"))
        elif m := re.fullmatch(r"bare-v1-pre(\d+)(?:-sfx(\d+))?", s):
            runners[s] = (lambda n, k: lambda h: run_bare_v1_prefix(args.url, h, n, k))(
                int(m[1]), int(m[2]) if m[2] else None)
        elif s.startswith("bare-v1-sfx"):
            runners[s] = (lambda n: lambda h: run_bare_v1_suffix(args.url, h, n))(int(s.removeprefix("bare-v1-sfx")))
        elif s == "bare-v1-heal":
            runners[s] = lambda h: run_bare_v1_heal(args.url, h)
        elif s in ("pf-llamacpp", "pf-openai"):
            cfg = pf_config(rec.url, s.removeprefix("pf-"), workdir)
            runners[s] = (lambda c: lambda h: run_pilotfish(args.pilotfish, c, workdir, h, rec))(cfg)
        elif s in LSP_SYSTEMS:
            kind, chunks = LSP_SYSTEMS[s]
            cfg = pf_config(rec.url, kind, workdir,
                            f'prefetch = "off"\nwarm_up = false\nrecent_chunks = {chunks}', name=s)
            runners[s] = (lambda c: lambda h: run_pilotfish_lsp(args.pilotfish, c, workdir, h, rec))(cfg)
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
            if args.repeat:
                # The same request again at once: the model server's cache holds its prompt.
                t0 = time.monotonic()
                try:
                    again, _, extra_again = runners[s](hole)
                except Exception:  # noqa: BLE001
                    again, extra_again = None, {}
                row["answers"][s]["repeat"] = {
                    "seconds": time.monotonic() - t0, "same": again == raw,
                    "timings": extra_again.get("timings", {}),
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


def write_holes(path: Path, holes: list[dict], seed: int, about: str) -> None:
    path.write_text(json.dumps({"about": about, "seed": seed, "holes": holes},
                               indent=1, ensure_ascii=False) + "\n")
    from collections import Counter
    print(Counter(h["language"] for h in holes), f"-> {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("holes")
    h.add_argument("--per-lang", type=int, default=22)
    h.add_argument("--seed", type=int, default=20261122)
    h.add_argument("--max-prefix", type=int, default=MAX_PREFIX,
                   help="characters of prefix stored per hole (the same holes, cut wider)")
    h.add_argument("--out", default=str(HOLES))
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
    r.add_argument("--repeat", action="store_true",
                   help="ask each system twice in a row; the second finds its prompt cached")
    r.add_argument("--holes", default=str(HOLES), help="a holes file (default: the 66 holes)")
    r.add_argument("--siblings", default="",
                   help="a siblings file (`siblings` command) to open beside the holes")
    sb = sub.add_parser("siblings")
    sb.add_argument("--per-hole", type=int, default=2)
    sb.add_argument("--seed", type=int, default=20261205)
    xf = sub.add_parser("xfile-holes")
    xf.add_argument("--per-lang", type=int, default=22)
    xf.add_argument("--seed", type=int, default=20261205)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--diffs", action="store_true")
    args = ap.parse_args()
    if args.cmd == "holes":
        wider = "" if args.max_prefix == MAX_PREFIX else f" --max-prefix {args.max_prefix} --out {args.out}"
        write_holes(Path(args.out), make_holes(args.per_lang, args.seed, args.max_prefix), args.seed,
                    "FIM holes for benches/quality.py: each is a line of real third-party code cut at a "
                    "token boundary; `expected` is the rest of the line. `source` is where it was read "
                    "(on the machine that cut them), `license` that file's license. Cut by "
                    f"`benches/quality.py holes --per-lang {args.per_lang} --seed {args.seed}{wider}`.")
    elif args.cmd == "siblings":
        holes = json.loads(HOLES.read_text())["holes"]
        SIBLINGS.write_text(json.dumps({
            "about": "Other files of each hole's package that the `lsp-*` systems open and edit "
                     "(at `spot`, a random code line) before asking: context that is usually beside "
                     "the point. Cut by `benches/quality.py siblings "
                     f"--per-hole {args.per_hole} --seed {args.seed}`.",
            "siblings": make_siblings(holes, args.per_hole, args.seed),
        }, indent=1, ensure_ascii=False) + "\n")
        print(f"-> {SIBLINGS}")
    elif args.cmd == "xfile-holes":
        write_holes(XFILE_HOLES, make_xfile_holes(args.per_lang, args.seed), args.seed,
                    "Cross-file FIM holes for benches/quality.py: the expected rest of the line "
                    "names something defined in another file of the package and nowhere in the "
                    "hole's file; `siblings` are that file (edited at the definition) and another "
                    "file of the package (edited at a random code line), in random order. Cut by "
                    f"`benches/quality.py xfile-holes --per-lang {args.per_lang} --seed {args.seed}`.")
    elif args.cmd == "run":
        run(args)
    else:
        print(report(json.loads(Path(args.results).read_text()), args.diffs))


if __name__ == "__main__":
    main()
