#!/usr/bin/env bash
# GPU check: the Triton kernel tests on CUDA, then the CUDA benchmarks, in under 8 minutes.
#
#   bash bench/gpu_check.sh [OUT_DIR]      (OUT_DIR: $1, else $OUT, else bench/out)
#
# For a machine with an NVIDIA GPU and nothing to download: vqfast installed in the current python
# environment, or runnable from the repository root (PYTHONPATH is set to it). Builds nothing extra
# (the CUDA paths use Triton; the C++ CPU ops are not built). Each step runs under `timeout`; its
# output goes to the terminal and to OUT_DIR/<step>.log, and a short summary table comes LAST.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-bench/out}}"
mkdir -p "$OUT_DIR"
: > "$OUT_DIR/steps.tsv"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRITON_INTERPRET=0
T0=$(date +%s)

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

# Budget: 15 + 200 + 180 + 60 + 10 s = 465 s, inside 8 minutes with room for process start-up.
run_step gpu 15 nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu \
    --format=csv
run_step tests 200 env TRITON_INTERPRET=0 VQFAST_TEST_DEVICE=cuda \
    "$PY" -m pytest -q --tb=short tests/test_triton_kernels.py
run_step quantize 180 "$PY" bench/quantize.py --device cuda --quick \
    --json "$OUT_DIR/quantize-cuda.json"
run_step subsequence 60 "$PY" bench/subsequence.py --device cuda \
    --json "$OUT_DIR/subsequence-cuda.json"

timeout 10 "$PY" bench/summary.py "$OUT_DIR"
echo "total $(($(date +%s) - T0)) s; logs and JSON in $OUT_DIR"
# Exit status: 0 only when every step succeeded.
! cut -f2 "$OUT_DIR/steps.tsv" | grep -qv '^0$'
