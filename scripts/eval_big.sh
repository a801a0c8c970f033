#!/usr/bin/env bash
# The larger same-seed evaluation that gates fine-tunes (scripts/train_device.sh with EVAL_N,
# scripts/train_device_ab.sh): multikey, multiquery, multivalue and vt, and the needle right before
# the question (dist 0), at 4K and 16K, N samples each, PyTorch on the GPU machine.
#   bash scripts/eval_big.sh MODEL_DIR N [eval_tasks.py flags] > OUT.txt   (last line: the results as JSON)
# (e.g. --vt-trail for a model trained with train.py --vt-trail)
set -uo pipefail
cd "$(dirname "$0")/.."
model=$1 n=$2
shift 2
exec python3 tools/train/eval_tasks.py --model "$model" --lengths 4096,16384 --n "$n" \
  --families multikey,multiquery,multivalue,vt --dists 0 --seed 777 --corpus .carry/corpus.txt.gz "$@"
