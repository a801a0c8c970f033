#!/usr/bin/env bash
# Evaluation through the GPU engine with several eval_engine.py processes at once: one process
# spends much of its time generating haystacks and starting the CLI, not on the GPU. Session 10 ran
# 300 single-needle haystacks at 1M this way within 450 s (five processes, next to a training
# process on the same GPU): 1.5 s per haystack, where append + question alone averaged 2.5 s.
#
#   GPU machine (after `bash scripts/gpu_engine_check.sh --prepare` here; carry .carry/gpu and
#   .carry/corpus.txt.gz; the model in models/hsadb-small):
#     PAR_TASKS="vt;multikey,multiquery" PAR_NEEDLE_LENGTHS=1048576 bash scripts/gpu_eval_parallel.sh
#
# Knobs: PAR_TASKS (';'-separated task lists, one process per list and length (or PAR_TASKS_PROCS),
# at the lengths of PAR_TASKS_LENGTH (comma-separated; 1048576) with PAR_TASKS_N haystacks per task
# (20) and seed 1234: a list meets the same haystacks as gpu_engine_check.sh's GPU_TASKS=<list>
# run, e.g. "vt" and "multikey,multiquery" at 1M those of docs/eval/tasks-1m-gpu-engine-*.jsonl;
# with a larger PAR_TASKS_N a list's first task still begins with those haystacks),
# PAR_TASKS_PROCS (1: each list and length split over up to this many processes, each its own slice
# of the same haystacks through eval_engine.py's --skip/--count: session 20 ran 160 1M haystacks,
# vt and multikey, in 109 s with 16 processes of 10; the records keep the haystacks' order),
# PAR_TASKS_FROM (0: the first haystack of each list's stream to run; a list's stream is
# PAR_TASKS_N haystacks of each of its tasks in turn, so PAR_TASKS_N=200 PAR_TASKS_FROM=40 on "vt"
# runs the 160 after the 40 that earlier runs met),
# PAR_NEEDLE_LENGTHS (comma-separated; single needle, one process per depth 0/25/50/75/100% and
# length, PAR_NEEDLE_N per depth (60; a comma-separated list gives each length its own), seeds
# PAR_NEEDLE_SEED+1 ... +5 (5100: session 10's 1M run; a concurrent run with another
# PAR_NEEDLE_SEED and PAR_TMP adds different haystacks), PAR_TIMEOUT (each
# process, 450 s), MODEL (models/hsadb-small); for a check on a machine without the GPU build:
# HSADB (the CLI; default .carry/gpu/hsadb with its libraries), PY (python3);
# PAR_TMP (scratch: databases and per-process records; /dev/shm/par when the databases take less than
# half of /dev/shm's free space (the H200 machine's is 128 GiB; session 22 ran there), else /tmp/par;
# give each concurrent run its own);
# PAR_EVAL_EXTRA (more eval_engine.py flags, e.g. --wrap-from-start: the 16M haystacks of runs before
# session 11's random corpus offset, docs/eval/niah-16m-gpu-engine-49860.jsonl among them).
# Disk: every process keeps one database in PAR_TMP, as large as its haystack (a 64K haystack's is
# 20 MB, 305 bytes per token, with hsadb-small), so six 16M processes need ~30 GB. The script
# checks the free space first (PAR_BYTES_PER_TOKEN, 400 with a margin; PAR_DISK_CHECK=0 skips it)
# and removes its databases at the end: session 18's second call on a warm machine still had the
# first call's, the disk filled, and two processes stopped at their first haystack.
# $OUT (at most 8 files come back from a call): tasks.jsonl, needle.jsonl (eval_engine.py's records,
# written as they come, so a timeout keeps what finished), par.log (progress and a summary).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-par-out}
MODEL=${MODEL:-models/hsadb-small}
T=${PAR_TIMEOUT:-450}
P=${PAR_TMP:-}   # (the default is chosen below, once the databases' size is known)
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:$PATH PYTHONHASHSEED=0 PYTHONUNBUFFERED=1
if [ -z "${HSADB:-}" ]; then   # the GPU build and the Debian libraries it links
  . scripts/gpu_env.sh
  HSADB=$G/hsadb
fi
PY=${PY:-python3}
sha256sum "$MODEL/model.safetensors" | tee "$OUT/par.log"
# the free-space check: the sum of every process's haystack length x PAR_BYTES_PER_TOKEN
need=0
IFS=';' read -r -a lists <<< "${PAR_TASKS:-}"
IFS=, read -r -a tlengths <<< "${PAR_TASKS_LENGTH:-1048576}"
IFS=, read -r -a lengths <<< "${PAR_NEEDLE_LENGTHS:-}"
depths=(0 0.25 0.5 0.75 1.0)   # one needle process per depth and length, seeds PAR_NEEDLE_SEED+1 ...
K=${PAR_TASKS_PROCS:-1}
[[ "$K" =~ ^[0-9]+$ ]] && [ "$K" -ge 1 ] || { echo "gpu_eval_parallel: PAR_TASKS_PROCS=$K: give a number >= 1" >&2; exit 2; }
for tl in "${lists[@]}"; do [ -n "$tl" ] && for TL in "${tlengths[@]}"; do need=$((need + K * TL)); done; done
for L in "${lengths[@]}"; do need=$((need + ${#depths[@]} * L)); done
need=$((need * ${PAR_BYTES_PER_TOKEN:-400}))
if [ -z "$P" ]; then   # memory (tmpfs) when it holds the databases with room to spare, else the disk
  shm=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -n 1)
  if [ -n "$shm" ] && [ "$need" -lt $((shm / 2)) ]; then P=/dev/shm/par; else P=/tmp/par; fi
fi
rm -rf "$P" && mkdir -p "$P"
free=$(df --output=avail -B1 "$P" | tail -n 1)
if [ "${PAR_DISK_CHECK:-1}" != 0 ] && [ "$need" -gt "$free" ]; then
  echo "gpu_eval_parallel: the databases need ~$((need >> 30)) GiB, $P has $((free >> 30)) GiB free" \
       "(an earlier run's PAR_TMP? fewer processes? PAR_DISK_CHECK=0 runs anyway)" >&2
  exit 2
fi
E=("$PY" tools/eval/eval_engine.py --hsadb "$HSADB" --model "$MODEL" --corpus .carry/corpus.txt.gz ${PAR_EVAL_EXTRA:-})
n=0
NT=${PAR_TASKS_N:-20}
FROM=${PAR_TASKS_FROM:-0}
for tl in "${lists[@]}"; do
  [ -n "$tl" ] || continue
  IFS=, read -r -a tasks <<< "$tl"
  total=$((${#tasks[@]} * NT))   # the list's haystacks at one length: NT per task, one task after another
  [ "$FROM" -lt "$total" ] || { echo "gpu_eval_parallel: PAR_TASKS_FROM=$FROM >= $total haystacks of '$tl'" >&2; exit 2; }
  per=$(( (total - FROM + K - 1) / K ))
  for TL in "${tlengths[@]}"; do
    for ((s = FROM; s < total; s += per)); do   # K processes, each its own slice of the same haystacks
      n=$((n + 1)); t=$(printf 't%03d' $n)
      timeout "$T" "${E[@]}" --tasks "$tl" --lengths "$TL" --n "$NT" --skip $s --count $per \
        --out $P/$t --db $P/db$t > $P/$t.log 2>&1 &
    done
  done
done
IFS=, read -r -a counts <<< "${PAR_NEEDLE_N:-60}"
j=0
for L in "${lengths[@]}"; do
  N=${counts[$j]:-${counts[0]}}; j=$((j + 1))
  i=0
  for d in "${depths[@]}"; do
    i=$((i + 1)); n=$((n + 1)); t=$(printf 'n%03d' $n)
    timeout "$T" "${E[@]}" --heatmap --lengths "$L" --depths $d --n "$N" --seed $((${PAR_NEEDLE_SEED:-5100} + i)) \
      --out $P/$t --db $P/db$t > $P/$t.log 2>&1 &
  done
done
[ $n -gt 0 ] || { echo "gpu_eval_parallel: set PAR_TASKS and/or PAR_NEEDLE_LENGTHS" >&2; exit 2; }
wait
cat $P/t*/results.jsonl > "$OUT/tasks.jsonl" 2>/dev/null
cat $P/n*/results.jsonl > "$OUT/needle.jsonl" 2>/dev/null
cat $P/*.log >> "$OUT/par.log"
rm -rf $P/db*   # the databases: scratch, and the next call on a warm machine needs the disk
if [ ! -s "$OUT/tasks.jsonl" ] && [ ! -s "$OUT/needle.jsonl" ]; then
  echo "gpu_eval_parallel: no haystack was evaluated; the processes' output:" >&2
  tail -n 5 $P/*.log >&2
  exit 1
fi
"$PY" - "$OUT" <<'PY' | tee -a "$OUT/par.log"
import collections, json, os, sys
for f in ("tasks.jsonl", "needle.jsonl"):
    p = os.path.join(sys.argv[1], f)
    hit, n = collections.Counter(), collections.Counter()
    for line in open(p) if os.path.exists(p) else []:
        r = json.loads(line)
        k = (r["task"], r["length"], r["depth"])
        n[k] += 1
        hit[k] += r["ok"]
    for k in sorted(n, key=str):
        print("%s L=%d depth=%s: %d/%d" % (k[0], k[1], k[2], hit[k], n[k]))
PY
