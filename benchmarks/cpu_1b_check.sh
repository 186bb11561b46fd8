#!/usr/bin/env bash
# The 1.1B measurements of issue 10 §3/§5 on a shared 24 GB CPU machine, in one sitting:
#   1. search_cost.py: a real `evomerge run` (bf16, 3 experts, 6 evaluations) per method —
#      task_arithmetic, ties, dare_ties: time to the first evaluation, merge seconds per candidate,
#      peak memory against the placement plan;
#   2. candidate_cost.py, resident (memory auto): in-place merge vs the copy bandwidth, the
#      merge-to-disk-and-reload baseline per method, tokens/s per engine, peak memory;
#   3. candidate_cost.py, offload: the streaming path's cost and memory on the same shape.
#
#   benchmarks/cpu_1b_check.sh            # 1.1B (TinyLlama shapes); needs ~16 GiB available
#   benchmarks/cpu_1b_check.sh --dry-run  # the same steps at the tiny shape
#
# While it runs the file $BIGMEM_FLAG (default /work/notes/BIGMEM) exists, so that other users of
# the machine hold back; it is removed on exit, whatever the exit. Every process runs under a
# memory floor (--floor-gib, default 2): it stops itself when the host's available memory falls
# below it. JSON lines go to stdout and to $LOG (default $TMPDIR/cpu_1b_check.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.."

SHAPE=1.1b NEED_GIB=16 FLOOR=2
[[ "${1:-}" == "--dry-run" ]] && SHAPE=tiny NEED_GIB=1
PY="${PY:-.venv/bin/python}"
FLAG="${BIGMEM_FLAG:-/work/notes/BIGMEM}"
LOG="${LOG:-${TMPDIR:-/tmp}/cpu_1b_check-$SHAPE.jsonl}"
ROOT="${ROOT:-${TMPDIR:-/tmp}/evomerge-bench}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAY_USAGE_STATS_ENABLED=0 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
export PATH="$PWD/.venv/bin:$PATH"

avail_gib() { awk '/^MemAvailable:/ {printf "%d", $2 / 1048576}' /proc/meminfo; }
note() { echo "{\"benchmark\": \"cpu_1b_check\", $*}" | tee -a "$LOG"; }

waited=0
while (( $(avail_gib) < NEED_GIB && waited < 300 )); do
  echo "== waiting: $(avail_gib) GiB available, want $NEED_GIB" >&2
  sleep 15; waited=$((waited + 15))
done
free -g >&2
note "\"kind\": \"start\", \"shape\": \"$SHAPE\", \"available_gib\": $(avail_gib), \"waited_s\": $waited, \"utc\": \"$(date -u +%H:%M:%S)\""
if (( $(avail_gib) < FLOOR + 4 )); then
  note "\"kind\": \"refused\", \"reason\": \"less than $((FLOOR + 4)) GiB available\""
  exit 1
fi

[[ $SHAPE == tiny ]] || { touch "$FLAG"; trap 'rm -f "$FLAG"' EXIT INT TERM; }

step() { echo "== $* ($(date -u +%H:%M:%S), $(avail_gib) GiB available)" >&2; }
run() { "$@" 2>>"$LOG.stderr" | tee -a "$LOG"; }

step "1. search_cost: evomerge run per method"
run timeout 900 nice -n 5 "$PY" benchmarks/search_cost.py --shape "$SHAPE" --experts 3 --evals 6 \
  --floor-gib "$FLOOR" --timeout 270 --root "$ROOT"
step "2. candidate_cost: resident"
run timeout 360 nice -n 5 "$PY" benchmarks/candidate_cost.py --shape "$SHAPE" --device cpu --experts 3 \
  --candidates 2 --prompts 8 --batch 8 --floor-gib "$FLOOR"
step "3. candidate_cost: offload"
run timeout 180 nice -n 5 "$PY" benchmarks/candidate_cost.py --shape "$SHAPE" --device cpu --experts 3 \
  --memory offload --methods task_arithmetic ties --candidates 2 --no-eval --no-disk-baseline --floor-gib "$FLOOR"
note "\"kind\": \"end\", \"utc\": \"$(date -u +%H:%M:%S)\", \"available_gib\": $(avail_gib)"
