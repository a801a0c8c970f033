#!/usr/bin/env bash
# Two fine-tuning variants side by side in one GPU call, each through scripts/train_device.sh,
# then the better one's weights come back. The two processes share the GPU at about half speed
# each (measured: ~150K tok/s each against ~296K alone), so the pair buys a controlled comparison
# on the same data and time, not throughput. Variant settings: A_MIX, A_LR, A_EXTRA, A_EVAL_EXTRA and B_MIX,
# B_LR, B_EXTRA, B_EVAL_EXTRA (each falls back to MIX, LR, EXTRA, EVAL_EXTRA); everything else (INIT, MINUTES, COPY_IN_CHUNK, ...) is shared.
#
#   GPU machine (carry .carry/corpus.txt.gz and INIT):  bash scripts/train_device_ab.sh
#
# The winner has the most exact answers on scripts/eval_big.sh (EVAL_N samples per cell of multikey,
# multiquery, multivalue and vt at 4K and 16K) among variants whose dist 0 at 4K is >= 95%.
# $OUT: a.tgz, b.tgz (each variant's command, logs, evals), eval_base.txt (the same eval of
# models/hsadb-small), winner.txt, ft_model.part.* (the winner's weights), and with GPU_CHECK=1
# gpucheck.txt (scripts/gpu_engine_check.sh's tests, run alongside; carry .carry/gpu too); with
# SEND_BOTH=1 both variants' weights come back as a_model.part.* and b_model.part.* instead.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-train-out}
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
export EVAL_N=${EVAL_N:-100} SEND_WEIGHTS=0
if [ "${GPU_CHECK:-0}" = 1 ]; then
  (OUT=/tmp/gchk GPU_BENCH=0 bash scripts/gpu_engine_check.sh > /tmp/gchk.out 2>&1; echo "rc $?" >> /tmp/gchk.out) &
fi
for v in a b; do
  V=${v^^}
  mix=${V}_MIX lr=${V}_LR ex=${V}_EXTRA ee=${V}_EVAL_EXTRA
  OUT=/tmp/ab/$v TMPD=/tmp/ft_$v MIX="${!mix:-${MIX:-}}" LR="${!lr:-${LR:-2e-4}}" EXTRA="${!ex:-${EXTRA:-}}" \
    EVAL_EXTRA="${!ee:-${EVAL_EXTRA:-}}" \
    bash scripts/train_device.sh > /tmp/ab_$v.out 2>&1 &
done
bash scripts/eval_big.sh models/hsadb-small "$EVAL_N" > "$OUT/eval_base.txt" 2>&1
wait
for v in a b; do cp /tmp/ab_$v.out /tmp/ab/$v/stdout.txt; tar czf "$OUT/$v.tgz" -C /tmp/ab $v; done
[ -f /tmp/gchk.out ] && cat /tmp/gchk.out /tmp/gchk/*.log > "$OUT/gpucheck.txt" 2>/dev/null
python3 - <<'PY' | tee "$OUT/winner.txt"
import json
best = None
for v in "ab":
    try:
        r = json.loads(open("/tmp/ab/%s/eval_big.txt" % v).read().strip().splitlines()[-1])
    except Exception as e:
        print(v, "no eval:", e); continue
    score = sum(x["acc"] * x["n"] for k, x in r.items() if not k.startswith("dist"))
    ok = r.get("dist0@4096", {}).get("acc", 0) >= 0.95
    print(v, "score", round(score), "dist0@4096", r.get("dist0@4096", {}).get("acc"), "ok" if ok else "gated out")
    if ok and (best is None or score > best[1]):
        best = (v, score)
print("winner", best[0] if best else "none")
PY
w=$(awk '/^winner/{print $2}' "$OUT/winner.txt")
if [ "${SEND_BOTH:-0}" = 1 ]; then
  for v in a b; do split -b 15M /tmp/ft_$v/model/model.safetensors "$OUT/${v}_model.part."; done
elif [ -n "$w" ] && [ "$w" != none ]; then
  split -b 15M /tmp/ft_$w/model/model.safetensors "$OUT/ft_model.part."
fi
tail -n 5 /tmp/ab_a.out /tmp/ab_b.out
exit 0
