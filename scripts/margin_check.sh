#!/usr/bin/env bash
# Retrieval margin of a model, measured with the learning rate at 0 (nothing is trained): 12 steps
# of 2 x 4K generated samples through tools/train/train.py on the CPU, the same samples for every
# model (the rng follows the start step, so every model starts at step 49,860), and the averages of
# its one log line. A check before any GPU evaluation (docs/training.md, sessions 11-12):
#
#   bash scripts/margin_check.sh MODEL_DIR OUT [CHECK ...]
#
# Checks (default: all; about 6 minutes each on 2 cores):
#   own     the retrieval loss at supervised answer positions against the sample's own chunks
#   queue   the same with the other sample's chunks and up to 4,096 landmarks of earlier steps as
#           competitors (--ret-neg-queue 4096): the 16M failure in miniature
#   vt      vt samples only, with VAR syntax (as evaluated)
#   syntax  vt samples only, in other syntaxes (--vt-syntax 1): how much vt keys on the bytes VAR
# OUT gets each check's train.py log and margin.txt: one line per check with ret (loss), ret_top1,
# ans (answer loss) and ans_tok_acc.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case ${1:-} in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
model=$1 out=$2
shift 2
checks=${*:-own queue vt syntax}
PY=${PY:-/usr/bin/python3}
export PYTHONHASHSEED=0  # the samples depend on the hash seed (data.py _distinct_keys; the tools pin it too)
[ -f "$model/model.safetensors" ] || { echo "margin_check: $model/model.safetensors does not exist" >&2; exit 2; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tools/train/make_init.py --model "$model" --step 49860 --tokens 0 --out "$tmp/init" > /dev/null
C=(--resume "$tmp/init" --max-steps 12 --log-every 12 --minutes 60 --eval-every-min 0
   --final-eval-lengths 4096 --eval-n 2 --lr 0 --warmup-steps 0 --tokens-per-step 8192
   --curriculum 0:4096 --vt-trail --vt-hops 1,1,1 --value-align 0.25 --sup-after --seed 11)
for c in $checks; do
  case $c in
    own) x=() ;;
    queue) x=(--ret-neg-queue 4096) ;;
    vt) x=(--mix '{"vt":1.0}') ;;
    syntax) x=(--mix '{"vt":1.0}' --vt-syntax 1) ;;
    *) echo "margin_check: unknown check '$c'" >&2; exit 2 ;;
  esac
  rm -rf "$tmp/ck"
  "$PY" tools/train/train.py --out "$tmp/ck" "${C[@]}" "${x[@]}" --log "$out/$c.log" > "$out/$c.out" 2>&1 ||
    { tail -n 20 "$out/$c.out" >&2; exit 1; }
  line=$(grep ' step 49872 L ' "$out/$c.log") || { echo "margin_check: no log line in $out/$c.log" >&2; exit 1; }
  printf '%-7s %s\n' "$c" "$(sed 's/.*| ans \([^ ]*\) lm [^ ]* ret \([^ ]*\) ret_top1 \([^ ]*\) ans_tok_acc \([^ ]*\) .*/ret \2 ret_top1 \3 ans \1 ans_tok_acc \4/' <<< "$line")" |
    tee -a "$out/margin.txt"
done
