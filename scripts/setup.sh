#!/usr/bin/env bash
# One-time (and idempotent) set-up: a virtual environment at .venv with everything installed.
# Re-running it when nothing changed takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
VPY=$VENV/bin/python
STAMP=$VENV/.orin-setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VPY" -c 'import llama_cpp, orin_console' 2>/dev/null; then
    exit 0
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x "$VPY" ]; then
    echo "setup: creating the virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VPY" -m pip install --quiet --disable-pip-version-check --upgrade pip

# llama-cpp-python builds from source: minutes, so show that it is working.
LLAMA_REQ=$(sed -n 's/.*"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml)
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '${LLAMA_REQ#*==}')" 2>/dev/null; then
    LOG=$VENV/llama-build.log
    extra=()
    # A CUDA build (CMAKE_ARGS="-DGGML_CUDA=on" on the Jetson) must not reuse a cached CPU wheel.
    if [ -n "${CMAKE_ARGS:-}" ]; then
        extra+=(--no-cache-dir)
    elif [ "$(uname -m)" = "x86_64" ]; then
        # A portable x86-64 build (AVX2, no AVX-512/AMX): -march=native on a CPU with AMX
        # compiles llama.cpp's AMX kernels, which crash (SIGSEGV) on the first multi-token
        # decode on the virtual machines seen here (ggml-org/llama.cpp#20824). The wheel pip
        # caches is then safe on any x86-64 machine with AVX2.
        export CMAKE_ARGS="-DGGML_NATIVE=OFF"
    fi
    echo "setup: installing $LLAMA_REQ (a build from source takes about 5 minutes on 2 cores;"
    echo "       pip caches the wheel, so later installs take seconds). Full log: $LOG"
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$VPY" -m pip install -v --disable-pip-version-check "${extra[@]}" "$LLAMA_REQ" >"$LOG" 2>&1 &
    pid=$!
    start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        step=$(grep -oE '\[[0-9]+/[0-9]+\]' "$LOG" | tail -n 1 || true)
        if [ -n "$step" ]; then what="compiling $step"; else what=$(tail -n 1 "$LOG" | cut -c1-60); fi
        printf '\r  llama-cpp-python: %4ds  %-64s' $((SECONDS - start)) "$what"
    done
    printf '\n'
    if ! wait "$pid"; then
        echo "setup: building llama-cpp-python failed; the last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        echo "setup: a C/C++ compiler and cmake are needed (apt-get install build-essential cmake)" >&2
        exit 1
    fi
fi

echo "setup: installing orin-console and its dependencies"
"$VPY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
echo "$want" >"$STAMP"
echo "setup: done ($VENV)"
