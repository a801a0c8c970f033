#!/usr/bin/env bash
# The GPU-engine evaluation a model needs before it ships (docs/evaluation.md; the CPU part is
# scripts/eval_cpu.sh): named stages of gpu_eval_parallel.sh, the ones given run side by side in one
# call, each with its own scratch and records. The haystacks are those the shipped models met
# (the same seeds and counts), so a candidate pairs with them on the same corpus.
#
#   GPU machine (after `bash scripts/gpu_engine_check.sh --prepare` here; carry .carry/gpu and
#   .carry/corpus.txt.gz; the model in MODEL_DIR, e.g. copied over models/hsadb-small uncommitted):
#     bash scripts/eval_gpu_ship.sh MODEL_DIR STAGE [STAGE ...]
#
# Stages (session 26 ran "mkmq1m needle-a" and "needle-b needle-c vt4m", each call cut at PAR_TIMEOUT=530 s
# with most but not all haystacks done, then "vt16m mkmq4m mkmq16m", all done in 171 s: on the H200
# the 16 cores bound these runs, so two or three stages per call is about what fits):
#   vt1m      vt at 1M, 640 haystacks, 16 processes (362 s on the H200 in session 25)
#   mkmq1m    multikey and multiquery at 1M, 120 haystacks each, 6 processes
#   vt4m      vt at 4M, 40 haystacks, 4 processes
#   vt16m     vt at 16M, 24 haystacks, 4 processes
#   mkmq4m    multikey and multiquery at 4M, 20 each, 2 processes
#   mkmq16m   multikey and multiquery at 16M, 12 each, 4 processes
#   needle-a  single needle, seed 5600: 16M 30, 4M 60 and 1M 60 per depth (5 depths)
#   needle-b  single needle, seed 5800: 16M 30 per depth
#   needle-c  single needle, seed 5700: 16M 30, 4M 60 and 1M 60 per depth
#   needle-d  single needle, seed 5900: 16M 30 per depth
# $OUT: STAGE.jsonl (eval_engine.py's records) per stage, logs.tgz (each stage's par.log and
# gpu_eval_parallel.sh output), summary.txt (the model's sha256, wall time, each stage's summary):
# at most six stages per call, so that no more than 8 files come back.
# Knobs: PAR_TIMEOUT (each process, 530 s), and gpu_eval_parallel.sh's others (HSADB, PY).
set -uo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case ${1:-} in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
model=$1; shift
[ -f "$model/model.safetensors" ] || { echo "eval_gpu_ship: no $model/model.safetensors" >&2; exit 2; }
[ $# -le 6 ] || { echo "eval_gpu_ship: at most six stages per call (8 files come back)" >&2; exit 2; }
O=${OUT:-ship-out}
mkdir -p "$O/logs"
export MODEL=$model PAR_DISK_CHECK=0 PAR_TIMEOUT=${PAR_TIMEOUT:-530}
stage_env() {   # the gpu_eval_parallel.sh settings of a stage, as NAME=VALUE words
  case $1 in
    vt1m)     echo PAR_TASKS=vt PAR_TASKS_N=640 PAR_TASKS_PROCS=16 ;;
    mkmq1m)   echo PAR_TASKS=multikey,multiquery PAR_TASKS_N=120 PAR_TASKS_PROCS=6 ;;
    vt4m)     echo PAR_TASKS=vt PAR_TASKS_LENGTH=4194304 PAR_TASKS_N=40 PAR_TASKS_PROCS=4 ;;
    vt16m)    echo PAR_TASKS=vt PAR_TASKS_LENGTH=16777216 PAR_TASKS_N=24 PAR_TASKS_PROCS=4 ;;
    mkmq4m)   echo PAR_TASKS=multikey,multiquery PAR_TASKS_LENGTH=4194304 PAR_TASKS_N=20 PAR_TASKS_PROCS=2 ;;
    mkmq16m)  echo PAR_TASKS=multikey,multiquery PAR_TASKS_LENGTH=16777216 PAR_TASKS_N=12 PAR_TASKS_PROCS=4 ;;
    needle-a) echo PAR_NEEDLE_SEED=5600 PAR_NEEDLE_LENGTHS=16777216,4194304,1048576 PAR_NEEDLE_N=30,60,60 ;;
    needle-b) echo PAR_NEEDLE_SEED=5800 PAR_NEEDLE_LENGTHS=16777216 PAR_NEEDLE_N=30 ;;
    needle-c) echo PAR_NEEDLE_SEED=5700 PAR_NEEDLE_LENGTHS=16777216,4194304,1048576 PAR_NEEDLE_N=30,60,60 ;;
    needle-d) echo PAR_NEEDLE_SEED=5900 PAR_NEEDLE_LENGTHS=16777216 PAR_NEEDLE_N=30 ;;
    *) return 1 ;;
  esac
}
for s in "$@"; do stage_env "$s" > /dev/null || { echo "eval_gpu_ship: unknown stage '$s'" >&2; usage >&2; exit 2; }; done
[ "$(printf '%s\n' "$@" | sort | uniq -d)" = "" ] || { echo "eval_gpu_ship: a stage given twice" >&2; exit 2; }
pids=()
t0=$(date +%s)
sha256sum "$model/model.safetensors" > "$O/summary.txt"
for s in "$@"; do
  # shellcheck disable=SC2046  # the stage's settings are words by design
  env $(stage_env "$s") OUT="$O/$s" PAR_TMP=/dev/shm/ship-$s bash scripts/gpu_eval_parallel.sh > "$O/logs/$s.out" 2>&1 &
  pids+=($!)
done
declare -A rcs
i=0
for s in "$@"; do wait "${pids[$i]}"; rcs[$s]=$?; i=$((i + 1)); done
echo "wall $(( $(date +%s) - t0 )) s, PAR_TIMEOUT=$PAR_TIMEOUT" >> "$O/summary.txt"
for s in "$@"; do
  cat "$O/$s/tasks.jsonl" "$O/$s/needle.jsonl" > "$O/$s.jsonl" 2>/dev/null
  { echo "== $s: $(stage_env "$s"), $(wc -l < "$O/$s.jsonl") records, exit ${rcs[$s]}"
    grep -E ' depth=[^ ]*: [0-9]+/[0-9]+$' "$O/$s/par.log" 2>/dev/null; } >> "$O/summary.txt"
  cp "$O/$s/par.log" "$O/logs/$s.par.log" 2>/dev/null
  rm -rf "${O:?}/$s"
done
tar czf "$O/logs.tgz" -C "$O" logs && rm -rf "$O/logs"
cat "$O/summary.txt"
