#!/usr/bin/env bash
# On the GPU machine: the tokenizer decision of issue 33 item 1. The same v2 network, data and
# GPU time, once on bytes and once on the BPE of .carry/v2/tokenizer.json; each run's log, final
# evaluation (teacher-forced answers on fixed seen and held-out samples) and bf16 weights go to
# $OUT/bytes and $OUT/bpe. Usage: bash lab/v2/gpu_ab.sh MINUTES_EACH [PRESET]
set -uo pipefail
min=${1:-4}
preset=${2:-v2}
src=/tmp/v2src
mkdir -p "$src" && tar xzf .carry/v2/sources.tar.gz -C "$src"
export HSADB_BPE_LIB=$PWD/.carry/v2/lib/libhsadb_bpe.so PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for tok in bytes bpe; do
  spec=bytes; [ $tok = bpe ] && spec=.carry/v2/tokenizer.json
  mkdir -p "$OUT/$tok"
  python3 tools/train/train.py --data nl --tokenizer "$spec" --preset "$preset" \
    --sources-root "$src" --corpus .carry/v2/corpus.txt.gz --workers 14 \
    --out "/tmp/ck-$tok" --minutes "$min" --plan-minutes "$min" --tokens-per-step 65536 \
    --curriculum 0:1024,0.3:2048,0.6:4096 --eval-lengths 4096 --eval-n 48 --eval-tail 1024 \
    --eval-every-min 100 --log "$OUT/$tok/train.log" --no-optim-save --weights-bf16 > "$OUT/$tok/stdout.txt" 2>&1
  cp /tmp/ck-$tok/state.json "$OUT/$tok/" 2>/dev/null
  grep "final eval" "$OUT/$tok/train.log"
done
