#!/usr/bin/env bash
# The GPU checks of issue 10 §5, as one prepared script of at most 10 minutes for a machine with one
# CUDA GPU (an H200 here); `--dry-run` runs the same steps at the tiny shape on the CPU.
#
#   benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run  # anywhere: the same steps, tiny models, CPU
#
# Steps (each prints JSON lines; $OUT, if set, receives a copy of everything):
#   1. environment: torch / CUDA / GPU, evomerge importable;
#   2. candidate_cost at 1b and 7b shapes (bf16, 3 experts, device auto → cuda): in-place merge per
#      candidate vs the copy bandwidth, the disk baseline, tokens/s of every engine, peak memory;
#   3. the same 7b shape with --memory offload (base and task vectors in pinned host memory);
#   4. gpu_paths.py: device auto → cuda, bf16 merges on CUDA equal to the CPU's for deterministic
#      methods, CUDA OOM inside a candidate is a failed candidate and the next one runs, a search
#      through the in-process backend with num_gpus=1 completes.
#
# The GPU machine has no network: evomerge's pure-Python dependencies that its image lacks
# (pydantic, pydantic-core, annotated-types, typing-inspection, cmaes) travel as wheels in .whl/
# (see /work/.library/device/README.md: `echo /.whl/ >> .git/info/exclude`, then `pip download
# --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl pydantic==X pydantic-core==Y ...`;
# name `.whl` in the run's carry). evomerge itself runs from the tree (no install).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUT="${OUT:-}"
LOG=$( [[ -n "$OUT" ]] && echo "$OUT/gpu_check.jsonl" || echo /dev/null )
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAY_USAGE_STATS_ENABLED=0 OMP_WAIT_POLICY=PASSIVE

if [[ $DRY == 1 ]]; then
  PY="${PY:-.venv/bin/python}"
  SMALL=tiny BIG=tiny DEVICE=cpu THREADS=1 CAND=2 PROMPTS=4 NEW=4
  export OMP_NUM_THREADS=1
else
  PY="${PY:-python3}"
  SMALL=1b BIG=7b DEVICE=auto THREADS=8 CAND=3 PROMPTS=64 NEW=32
  if [[ -d .whl ]] && ! "$PY" -c "import pydantic" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  # run from the tree: evomerge.fitness is the top-level fitness/ folder (package-dir in pyproject)
  if ! "$PY" -c "import evomerge.fitness" 2>/dev/null; then
    [[ -e evomerge/fitness ]] || ln -s ../fitness evomerge/fitness
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

step() { echo "== $*" >&2; }
run() { "$@" 2>&1 | tee -a "$LOG"; }

step "1. environment"
run "$PY" - <<'PY'
import json, torch
import evomerge, evomerge.fitness.engines  # noqa: F401  importable from here
info = {"check": "env", "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
print(json.dumps(info))
PY

COMMON=(--device "$DEVICE" --dtype bfloat16 --experts 3 --threads "$THREADS" --candidates "$CAND"
        --prompts "$PROMPTS" --new-tokens "$NEW" --batch 16 --floor-gib 8)
step "2a. candidate cost, $SMALL shape"
run timeout 150 "$PY" benchmarks/candidate_cost.py --shape "$SMALL" "${COMMON[@]}"
step "2b. candidate cost, $BIG shape (resident when it fits)"
run timeout 210 "$PY" benchmarks/candidate_cost.py --shape "$BIG" "${COMMON[@]}" --methods task_arithmetic ties dare_ties \
    --disk-methods task_arithmetic
step "3. candidate cost, $BIG shape, offloaded"
run timeout 150 "$PY" benchmarks/candidate_cost.py --shape "$BIG" "${COMMON[@]}" --memory offload \
    --methods task_arithmetic ties --no-disk-baseline --no-eval
step "4. GPU paths: device auto, bf16 on CUDA, OOM recovery, in-process backend with num_gpus=1"
run timeout 90 "$PY" benchmarks/gpu_paths.py $( [[ $DRY == 1 ]] && echo --dry-run )
step "done"
