#!/usr/bin/env python3
"""First line first: on a model slower than the budget, how much sooner is the first line of
a multi-line suggestion there than the whole block? (Issue 12 item 7: Pilotfish streams a
slow model's block and shows its first line as soon as it is written.)

For each hole of benches/quality_holes.json (third-party code), the line the hole is in is
taken out whole and the cursor put at its indentation, as on a blank line inside a block,
where Pilotfish asks for a block. One streamed `/v1/completions` call with the Qwen FIM
template (the README's llama.cpp config), temperature 0, at most 256 tokens (Pilotfish's
block limit): the time to the end of the first line (the first line break after some code)
and to the end of the answer. Each call is preceded by an unrelated one-line prompt, so that
it reads its whole prompt, as the first request at a new place does.

    benches/first_line.py --url http://127.0.0.1:8071 [--limit 20] [--json out.json]

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path

HOLES = Path(__file__).resolve().parent / "quality_holes.json"


def stream(url: str, prompt: str, max_tokens: int) -> tuple[float | None, float, str]:
    """(seconds to the first complete line, seconds to the end, the text)."""
    body = json.dumps({
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "stop": ["<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                 "<|file_sep|>", "<|repo_name|>"],
    }).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.monotonic()
    text, first = "", None
    with urllib.request.urlopen(req, timeout=900) as resp:
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            obj = json.loads(line[5:])
            for choice in obj.get("choices", []):
                text += choice.get("text") or ""
            if first is None:
                code = text.lstrip()
                if code and "\n" in code:
                    first = time.monotonic() - t0
    return first, time.monotonic() - t0, text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    holes = json.loads(HOLES.read_text())["holes"][: args.limit]
    rows = []
    for h in holes:
        line_start = h["prefix"].rfind("\n") + 1
        line = h["prefix"][line_start:]
        indent = line[: len(line) - len(line.lstrip())]
        prefix = h["prefix"][:line_start] + indent
        prompt = f"<|fim_prefix|>{prefix}<|fim_suffix|>{h['suffix']}<|fim_middle|>"
        stream(args.url, "<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>", 1)  # flush the cache
        first, total, text = stream(args.url, prompt, 256)
        rows.append({"id": h["id"], "first_line_s": first, "total_s": total,
                     "lines": text.strip("\n").count("\n") + 1})
        print(f"{h['id']}: first line {first if first is None else round(first, 2)} s, "
              f"whole {total:.2f} s, {rows[-1]['lines']} lines", flush=True)
    multi = [r for r in rows if r["first_line_s"] is not None and r["lines"] > 1]
    firsts = [r["first_line_s"] for r in multi]
    totals = [r["total_s"] for r in multi]
    saved = [r["total_s"] - r["first_line_s"] for r in multi]
    print(f"\n{len(multi)} of {len(rows)} answers span several lines")
    if multi:
        print(f"first line p50 {statistics.median(firsts):.2f} s; whole block p50 "
              f"{statistics.median(totals):.2f} s; shown sooner by p50 {statistics.median(saved):.2f} s "
              f"({statistics.median([s / t for s, t in zip(saved, totals)]):.0%} of the wait)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
