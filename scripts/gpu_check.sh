#!/usr/bin/env bash
# The RAM tier's GPU check, on a machine with an NVIDIA GPU and no network (issue 12).
#
# Needs gpu-kit/ from `make gpu-kit` (carried over with the working tree), python3 (3.12),
# nvidia-smi, nvcc, and scikit-build-core, cmake, numpy and jinja2 in the system Python.
# Builds llama-cpp-python with CUDA from the kit's sdist into a fresh venv (about 6 minutes on
# 16 cores), installs the project offline from the kit's wheels, then runs scripts/gpu_check.py,
# which prints one JSON line and exits non-zero on a failed expectation.
#
#   bash scripts/gpu_check.sh            # GPU_CHECK_VENV=/tmp/gpu-check-venv by default
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-gpu-kit}
VENV=${GPU_CHECK_VENV:-/tmp/gpu-check-venv}
PY=${PYTHON:-python3}
SDIST="$KIT/llama_cpp_python-0.3.36.tar.gz"

for f in "$SDIST" "$KIT/model.gguf"; do
    [[ -f $f ]] || { echo "gpu_check: $f missing: run \`make gpu-kit\` where there is network" >&2; exit 2; }
done
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: not a GPU machine" >&2; exit 2; }
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
[[ -n $CAP ]] || { echo "gpu_check: nvidia-smi reported no compute capability" >&2; exit 2; }
echo "gpu_check: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), sm_$CAP"

# --system-site-packages: the build backend (scikit-build-core, cmake) and numpy/jinja2 come from
# the machine's Python; everything else from the kit.
[[ -x $VENV/bin/python ]] || "$PY" -m venv --system-site-packages "$VENV"
if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)" 2>/dev/null; then
    echo "gpu_check: building llama-cpp-python 0.3.36 with CUDA (sm_$CAP); log: $VENV/llama-build.log"
    start=$SECONDS
    CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CAP -DGGML_NATIVE=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$VENV/bin/python" -m pip install --no-build-isolation --no-deps --no-index -v "$SDIST" \
        >"$VENV/llama-build.log" 2>&1 || { tail -40 "$VENV/llama-build.log" >&2; exit 2; }
    echo "gpu_check: built in $((SECONDS - start)) s"
fi
"$VENV/bin/python" -m pip install -q --no-index --find-links "$KIT/wheels" "$KIT"/wheels/orin_console-*.whl
exec "$VENV/bin/python" scripts/gpu_check.py --model "$KIT/model.gguf" "$@"
