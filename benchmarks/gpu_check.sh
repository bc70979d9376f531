#!/usr/bin/env bash
# The GPU check: what the kernels compute and how fast, in the order that matters most if
# time runs out.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; results under $OUT
#   DRY=1 bash benchmarks/gpu_check.sh      # the same steps on CPU, tiny sizes, kernels
#                                           # through the Triton interpreter (the tests run it)
#
# One global deadline (DEADLINE_S, default 530 s from the start): each step runs under
# `timeout -k` with its own limit cut to the time left, and a step with too little time
# left is skipped and says so. Three files land in $OUT, each updated as soon as a step
# ends: status.txt (one line per step: rc, seconds, limit), log.txt (every step's output,
# streamed), results.json (each step's JSON under its name). Nothing needs nbval, plotly
# or ipywidgets: pytest runs with `-o addopts=""` (the project's addopts load nbval).
#
# Order (estimated seconds on an H200): preflight (CUDA, versions, one compiled launch of
# each pass checked against torch, 15); the host time of one step on the device path,
# piece by piece, and its weights against the tensor rule (20); the Triton passes alone, correctness against
# float64 and bandwidth at T = 4, 8, N = 2^22..2^26, float32 then bfloat16 (35); the
# compiled kernel tests with xdist (40); op key rows without torch.compile (40); DLRM
# throughput at T = 4, 8 with 7 rounds, batch 2048 then 32768 (45); kernel launches and
# host syncs per balanced step (15); then the torch.compile rows and bfloat16 op rows.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
PY="${PYTHON:-python3}"
DRY="${DRY:-0}"
DEADLINE_S="${DEADLINE_S:-530}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
: >"$OUT/status.txt"
: >"$OUT/log.txt"
echo '{}' >"$OUT/results.json"

if [ "$DRY" = 1 ]; then
    # CPU, the kernels through the interpreter; torch.compile steps keep their arguments
    # but run eagerly (TORCHDYNAMO_DISABLE), so the dry run stays short.
    export TRITON_INTERPRET=1 TORCHDYNAMO_DISABLE=1
    DEVICE=cpu
    TASKS=(4)
    PREFLIGHT=(--cpu)
    KERNEL_SIZES=(10)
    TEST_ARGS=(tests/test_ops_triton_real_path.py -k "several_blocks or dtype2-4-4096")
    WORKERS=0
    OP_SIZES=(10)
    OP_PRESET=--tiny
    ROUNDS=1
    THROUGHPUT=(--tiny --rounds 1)
    BIG_BATCH=256
    LAUNCH=(--tiny --log2-n 10 --steps 1 --tasks 4)
    PROFILE=(--cpu --tasks 3)
else
    export MBK_TRITON_COMPILED=1
    DEVICE=cuda
    TASKS=(4 8)
    PREFLIGHT=()
    KERNEL_SIZES=(22 23 24 25 26)
    TEST_ARGS=(tests/test_ops_triton.py tests/test_ops_triton_real_path.py tests/test_state_safety_cuda.py tests/test_device_path.py)
    WORKERS=4
    OP_SIZES=(20 22 24 26)
    OP_PRESET=--quick
    ROUNDS=5
    THROUGHPUT=(--quick --rounds 7)
    BIG_BATCH=32768
    LAUNCH=()
    PROFILE=()
fi

left() { echo $((DEADLINE_S - SECONDS)); }
FAILED=0

step() { # step NAME LIMIT CMD...: run under the deadline, stream to log.txt, record status
    local name=$1 limit=$2
    shift 2
    local remaining
    remaining=$(($(left) - 10)) # room for `timeout -k 5` and the bookkeeping
    if ((remaining < 15)); then
        echo "$name skipped: $(left)s left before the deadline" | tee -a "$OUT/status.txt"
        return 0
    fi
    ((limit > remaining)) && limit=$remaining
    local start=$SECONDS
    echo "===== $name (limit ${limit}s, $(left)s left)" >>"$OUT/log.txt"
    timeout -k 5 "$limit" "$@" >>"$OUT/log.txt" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - start))s (limit ${limit}s)" | tee -a "$OUT/status.txt"
    ((rc == 0)) || FAILED=$((FAILED + 1))
    return $rc
}

save() { # save NAME: merge $WORK/NAME.json (if written) into results.json under NAME
    [ -f "$WORK/$1.json" ] || return 0
    "$PY" - "$OUT/results.json" "$1" "$WORK/$1.json" <<'EOF'
import json, sys
path, name, part = sys.argv[1:]
results = json.load(open(path))
results[name] = json.load(open(part))
tmp = path + ".tmp"
json.dump(results, open(tmp, "w"), indent=1)
__import__("os").replace(tmp, path)
EOF
}

bench() { # bench NAME LIMIT ARGS...: python -m benchmarks ARGS --json, then save
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PY" -m benchmarks "$@" --device "$DEVICE" --json "$WORK/$name.json"
    save "$name"
}

{
    echo "DRY=$DRY device=$DEVICE deadline=${DEADLINE_S}s"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
} >>"$OUT/log.txt"

step preflight 60 "$PY" -m benchmarks.gpu_preflight "${PREFLIGHT[@]}"
if [ $? -eq 2 ]; then
    echo "aborted: no CUDA device" | tee -a "$OUT/status.txt"
    exit 2
fi
step device_profile 60 "$PY" -m benchmarks.device_path_profile "${PROFILE[@]}" \
    --json "$WORK/device_profile.json"
save device_profile
for dtype in float32 bfloat16; do
    bench "kernels_$dtype" 60 op --kernels-only --dtype "$dtype" --tasks "${TASKS[@]}" \
        --log2-sizes "${KERNEL_SIZES[@]}" --rounds "$ROUNDS" "$OP_PRESET"
done

PYTEST=(-m pytest -q -o addopts="" -p no:cacheprovider -p no:nbval -ra)
"$PY" -c "import xdist" 2>/dev/null && PYTEST+=(-n "$WORKERS")
"$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST+=(--timeout 140)
step compiled_tests 150 "$PY" "${PYTEST[@]}" "${TEST_ARGS[@]}"

bench op_key_float32 90 op --no-compile --no-kernels --tasks "${TASKS[@]}" \
    --log2-sizes "${OP_SIZES[@]}" --rounds "$ROUNDS" "$OP_PRESET"
bench throughput 90 throughput "${THROUGHPUT[@]}" --tasks "${TASKS[@]}" \
    --methods multibalance multibalance_tensor detach param_metabalance
bench throughput_big_batch 60 throughput "${THROUGHPUT[@]}" --tasks "${TASKS[@]}" \
    --batch "$BIG_BATCH" --methods multibalance multibalance_tensor
step launch_count 60 "$PY" -m benchmarks.launch_count --device "$DEVICE" "${LAUNCH[@]}" \
    --json "$WORK/launch_count.json"
save launch_count
bench op_compile_float32 150 op --no-kernels --tasks "${TASKS[@]}" \
    --log2-sizes "${OP_SIZES[@]}" --rounds "$ROUNDS" "$OP_PRESET"
bench op_key_bfloat16 90 op --no-compile --no-kernels --dtype bfloat16 --tasks "${TASKS[@]}" \
    --log2-sizes "${OP_SIZES[@]}" --rounds "$ROUNDS" "$OP_PRESET"

echo "done in ${SECONDS}s, $FAILED step(s) failed; results in $OUT" | tee -a "$OUT/status.txt"
((FAILED == 0))
