#!/usr/bin/env bash
# GPU check: the Triton kernel tests on CUDA, then the CUDA benchmarks, in under 8 minutes.
#
#   bash bench/gpu_check.sh [OUT_DIR]      (OUT_DIR: $1, else $OUT, else bench/out)
#
# For a machine with an NVIDIA GPU and nothing to download: torch, triton, pytest and hypothesis in
# the current python (pytest-xdist is used when present). vqfast need not be installed: when
# `import vqfast.kernels` fails from the repository root, the package is assembled in a temporary
# folder as an install would lay it out (kernels/ -> vqfast/kernels) and everything runs from there.
# Builds nothing (the CUDA paths use Triton; the C++ CPU ops are not built). Each step runs under
# `timeout`; its output goes to the terminal and to OUT_DIR/<step>.log; a short summary comes LAST.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
OUT_DIR="${1:-${OUT:-bench/out}}"
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
: > "$OUT_DIR/steps.tsv"
PY="${PYTHON:-python3}"
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
export VQFAST_GIT_COMMIT="${VQFAST_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
T0=$(date +%s)

if ! "$PY" -c "import vqfast.kernels" 2>/dev/null; then
    STAGE=$(mktemp -d)
    cp -r vqfast tests bench "$STAGE/"
    cp -r kernels "$STAGE/vqfast/kernels"
    cp -r csrc "$STAGE/vqfast/csrc"
    cd "$STAGE"
    echo "vqfast is not installed: running from a staged copy in $STAGE"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PARALLEL=()
if "$PY" -c "import xdist" 2>/dev/null; then PARALLEL=(-n 8); fi

# run_step NAME LIMIT_SECONDS COMMAND...: runs it under timeout, logs it, records rc and duration.
run_step() {
    local name=$1 limit=$2
    shift 2
    local start rc
    start=$(date +%s)
    echo "===== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" "$limit" \
        >> "$OUT_DIR/steps.tsv"
}

# Budget: 10 + 120 + 150 + 60 + 40 + 50 + 40 s = 470 s, inside 8 minutes with room for start-up.
run_step gpu 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv
run_step tests 120 env VQFAST_TEST_DEVICE=cuda \
    "$PY" -m pytest -q --tb=short -p no:cacheprovider "${PARALLEL[@]}" tests/ops
run_step quantize 150 "$PY" bench/quantize.py --device cuda --quick \
    --json "$OUT_DIR/quantize-cuda.json"
run_step large 60 "$PY" bench/quantize.py --device cuda --mem-limit-gb 40 --budget 0.5 \
    --case 1048576,512,8 --case 1048576,4096,32 --json "$OUT_DIR/quantize-cuda-large.json"
run_step subsequence 40 "$PY" bench/subsequence.py --device cuda \
    --json "$OUT_DIR/subsequence-cuda.json"
run_step model 50 "$PY" bench/model_step.py --device cuda --json "$OUT_DIR/model-step-cuda.json"
run_step model-bf16 40 "$PY" bench/model_step.py --device cuda --bf16 \
    --json "$OUT_DIR/model-step-cuda-bf16.json"

timeout 10 "$PY" "$REPO/bench/summary.py" "$OUT_DIR"
echo "total $(($(date +%s) - T0)) s; logs and JSON in $OUT_DIR"
# Exit status: 0 only when every step succeeded.
! cut -f2 "$OUT_DIR/steps.tsv" | grep -qv '^0$'
