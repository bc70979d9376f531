#!/usr/bin/env bash
# One prepared GPU check for the benchmarks issue, for a session that is lent a CUDA machine.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; results under $OUT
#
# 1. the Triton kernel tests compiled on the GPU (MBK_TRITON_COMPILED=1, see tests/conftest.py);
# 2. the op benchmark on CUDA: Triton fused op vs the PyTorch path vs naive vs torch.compile,
#    N = 2^16..2^26 per task, T = 2, 4, 8, against the measured copy bandwidth;
# 3. the training-throughput and memory benchmark on CUDA (when mbkernels.bench has it).
# Each step has its own time limit and log, so one failure does not hide the others.
# Runs from the source tree (PYTHONPATH), with the machine's own torch and triton;
# plotly is optional (the HTML chart is skipped without it). At most 8 files land in $OUT
# (env, status, one log per step, op_cuda.json, throughput_cuda.json, html where plotly is).
# Checked on a CPU machine (2026-11-29): every step runs, logs and records its status even
# when the one before it fails; the CUDA steps themselves still await a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD...: run with a limit, log to $OUT/NAME.txt, record the status
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name rc=$rc" | tee -a "$OUT/status.txt"
    tail -n 25 "$OUT/$name.txt"
}

html_arg() {  # --html only where plotly is importable
    "$PY" -c "import plotly" 2>/dev/null && echo "--html $OUT/$1"
}

{
    nvidia-smi || true
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step triton_compiled_tests 240 env MBK_TRITON_COMPILED=1 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_ops_triton.py
# shellcheck disable=SC2046
step op_cuda 240 "$PY" -m mbkernels.bench op --device cuda --json "$OUT/op_cuda.json" \
    $(html_arg op_cuda.html)
if "$PY" -m mbkernels.bench --help 2>/dev/null | grep -q throughput; then
    # shellcheck disable=SC2046
    step throughput_cuda 180 "$PY" -m mbkernels.bench throughput --device cuda --quick \
        --json "$OUT/throughput_cuda.json" $(html_arg throughput_cuda.html)
fi
echo "results in $OUT:"
ls -l "$OUT"
