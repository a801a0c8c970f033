#!/usr/bin/env bash
# One fine-tuning call on the GPU machine (PyTorch there, 10 minutes per command): resume from a
# checkpoint directory, train for MINUTES, export, evaluate the result with eval_tasks.py and send
# the exported weights back in 15 MB parts (reassemble with `cat ft_model.part.* > model.safetensors`).
#
#   GPU machine (carry .carry/corpus.txt.gz and the INIT directory):
#     bash scripts/train_device.sh                 # logs, eval and weights in $OUT
#
# Knobs (environment): INIT (resume dir, not in git: tools/train/make_init.py makes one that starts
# from exported weights with a fresh optimizer; default .carry/ckpt_ft_init), MINUTES (7),
# PLAN_MINUTES (the whole run's training minutes, for the lr schedule; default MINUTES: a run longer
# than one command is several calls, each with INIT the last one's $TMPD/ckpt and its own TMPD while
# the machine is still warm, all with the same PLAN_MINUTES), LR (2e-4), MIX (JSON family weights;
# default: the session-3 mix with 15% in-window copy), TAIL_ALIGN (0.5), COPY_IN_CHUNK (0: the copy
# family's share of pairs inside one chunk), CURRICULUM (0:4096), SEED (11), LM_WEIGHT (0.1), EXTRA
# (more flags; a flag given twice takes its last value), TMPD (scratch, /tmp/ft), EVAL_N (also
# scripts/eval_big.sh with this many samples per cell, written to eval_big.txt; 0 = none),
# SEND_WEIGHTS (1: the weights' parts to $OUT), BASELINE (a model directory, e.g. models/hsadb-small:
# also its eval_big and LM loss on this machine's corpus, written to eval_base.txt, for a same-corpus
# comparison), EVAL_EXTRA (eval_tasks.py flags for the new model's evals, e.g. --vt-trail when EXTRA
# has it).
# The command is written to $OUT/command.txt, so every run's flags come back with its numbers.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-train-out}
TMPD=${TMPD:-/tmp/ft}
mkdir -p "$OUT" "$TMPD"
export PATH=/opt/torch/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
INIT=${INIT:-.carry/ckpt_ft_init}
MINUTES=${MINUTES:-7}
LR=${LR:-2e-4}
MIX=${MIX:-'{"passkey":0.07,"niah":0.19,"multikey":0.1,"multiquery":0.15,"multivalue":0.15,"vt":0.14,"lm":0.05,"copy":0.15}'}
TAIL_ALIGN=${TAIL_ALIGN:-0.5}
CURRICULUM=${CURRICULUM:-0:4096}
SEED=${SEED:-11}
E="--lengths 4096 --n 20 --dists 0,4,16,64 --seed 12345 --corpus .carry/corpus.txt.gz ${EVAL_EXTRA:-}"
cmd=(python3 tools/train/train.py --out $TMPD/ckpt --resume "$INIT" --minutes "$MINUTES"
     --plan-minutes "${PLAN_MINUTES:-$MINUTES}" --curriculum "$CURRICULUM" --lr "$LR" --min-lr-ratio 1.0 --rewarm-steps 100
     --lm-weight "${LM_WEIGHT:-0.1}" --gain-lr-mult 5 --mix "$MIX" --tail-frac 0.25 --tail-zero 0.5
     --tail-align "$TAIL_ALIGN" --tail-align-straddle 0.4 --copy-in-chunk "${COPY_IN_CHUNK:-0}"
     --corpus .carry/corpus.txt.gz
     --eval-every-min 0 --eval-n 20 --eval-lengths 4096 --final-eval-lengths 4096 --eval-end-dists 0,4,16
     --log-every 100 --seed "$SEED" --log "$OUT/train.log" ${EXTRA:-})
printf '%q ' "${cmd[@]}" > "$OUT/command.txt"; echo >> "$OUT/command.txt"
nvidia-smi --query-gpu=name --format=csv,noheader >> "$OUT/command.txt"
"${cmd[@]}" > $TMPD/train.out 2>&1 || { tail -n 30 $TMPD/train.out; exit 1; }
tail -n 3 "$OUT/train.log"
python3 tools/train/export.py --ckpt $TMPD/ckpt --out $TMPD/model --dtype float32 > /dev/null || exit 1
python3 tools/train/eval_tasks.py --model $TMPD/model $E > "$OUT/eval_ft.txt" 2>&1
python3 tools/train/lm_loss.py $TMPD/model --corpus .carry/corpus.txt.gz --threads 4 >> "$OUT/eval_ft.txt" 2>&1
tail -n 17 "$OUT/eval_ft.txt"
if [ "${EVAL_N:-0}" -gt 0 ]; then
  bash scripts/eval_big.sh $TMPD/model "$EVAL_N" ${EVAL_EXTRA:-} > "$OUT/eval_big.txt" 2>&1
  tail -n 11 "$OUT/eval_big.txt"
fi
if [ -n "${BASELINE:-}" ] && [ "${EVAL_N:-0}" -gt 0 ]; then
  { bash scripts/eval_big.sh "$BASELINE" "$EVAL_N"
    python3 tools/train/lm_loss.py "$BASELINE" --corpus .carry/corpus.txt.gz --threads 4; } > "$OUT/eval_base.txt" 2>&1
  tail -n 2 "$OUT/eval_base.txt"
fi
cp $TMPD/model/config.json "$OUT/"
[ "${SEND_WEIGHTS:-1}" = 1 ] && split -b 15M $TMPD/model/model.safetensors "$OUT/ft_model.part."
sha256sum $TMPD/model/model.safetensors | tee -a "$OUT/command.txt"
exit 0
