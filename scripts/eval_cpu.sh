#!/usr/bin/env bash
# The CPU-engine evaluation a model needs before it ships (docs/evaluation.md): every haystack goes
# through the hsadb CLI (build/hsadb, embedded LMDB, CPU), one stage after another, each into its own
# folder of OUT with eval_engine.py's results.jsonl and summary.md.
#
#   bash scripts/eval_cpu.sh MODEL_DIR OUT [STAGE ...]
#
# Stages (default: demo, needle, tasks, vt, boundary; they took ~70 minutes on 2 cores):
#   needle     single needle at 4K, 16K and 64K, 60 per depth x 5 depths (seed 4099, one run per
#              length; engine time on the 2-core workstation: ~4, 7 and 21 minutes for step 38,965)
#   needle256  single needle at 256K, 60 per depth (seed 4100; ~16 s per haystack)
#   needle1m   single needle at 1M, 2 then 3 per depth (seeds 2027, 2029; ~55 s per haystack)
#   tasks      niah, multikey, multiquery, multivalue, vt at 4K-256K, 5 haystacks each (default seed;
#              4K+16K, then 64K+256K)
#   vt         vt at 16K, 64K and 256K, 10 each (seed 31: the haystacks of docs/eval/vt-c-engine-*.jsonl)
#   boundary   tools/eval/probe_boundary.py: values at a chunk boundary, and the demo's needle
#   demo       the demo's archive (samples/) in a memory and its three questions in trained phrasing;
#              fails unless the answers are the archive's 4471, 7302518 and 9931 (a shipped model must;
#              15 s)
#   passkey    probe_boundary.py --probe passkey at 16K, 40 haystacks (a pass key among other codes;
#              steps 60,084 / 83,738 / 87,539 / 93,012: 35 / 33 / 38 / 40 of 40 with one code, 29 / 28 / 38 / 39
#              with four; 6 minutes)
#   vt4k       vt at 4K, 100 haystacks (seed 1234; steps 87,539 / 83,738 / 74,138: 94 / 91 / 90 on
#              session 21's corpus, step 93,012 97 on session 25's; 4 minutes)
# The seeds are those of the runs in docs/eval, so a new model meets the same haystacks as the
# shipped one did (on the same corpus: make_corpus.py's output depends on the installed packages).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case ${1:-} in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
model=$1 out=$2
shift 2
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(demo needle tasks vt boundary)
[ -f "$model/model.safetensors" ] || { echo "eval_cpu: no $model/model.safetensors" >&2; exit 2; }
[ -x build/hsadb ] || { echo "eval_cpu: build/hsadb missing (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
mkdir -p "$out"
export PYTHONHASHSEED=0 PYTHONUNBUFFERED=1
E=(/usr/bin/python3 tools/eval/eval_engine.py --hsadb build/hsadb --model "$model" --db "$out/db")
D=(--depths 0,0.25,0.5,0.75,1)
for s in "${stages[@]}"; do
  echo "== $s ($(date +%T))"
  case $s in
    needle)    for L in 4096 16384 65536; do
                 "${E[@]}" --heatmap --lengths $L "${D[@]}" --n 60 --seed 4099 --out "$out/needle-$L"; done ;;
    needle256) "${E[@]}" --heatmap --lengths 262144 "${D[@]}" --n 60 --seed 4100 --out "$out/needle256" ;;
    needle1m)  "${E[@]}" --heatmap --lengths 1048576 "${D[@]}" --n 2 --seed 2027 --out "$out/needle1m-a"
               "${E[@]}" --heatmap --lengths 1048576 "${D[@]}" --n 3 --seed 2029 --out "$out/needle1m-b" ;;
    tasks)     T=(--tasks niah,multikey,multiquery,multivalue,vt --n 5)
               "${E[@]}" "${T[@]}" --lengths 4096,16384 --out "$out/tasks-4k-16k"
               "${E[@]}" "${T[@]}" --lengths 65536,262144 --out "$out/tasks-64k-256k" ;;
    vt)        "${E[@]}" --tasks vt --lengths 16384,65536,262144 --n 10 --seed 31 --out "$out/vt" ;;
    boundary)  P=(/usr/bin/python3 tools/eval/probe_boundary.py --models "$model" --db "$out/db")
               { "${P[@]}" --n 40; "${P[@]}" --probe demo --seed 5 --n 20; } | tee "$out/boundary.txt" ;;
    demo)      H=(build/hsadb --db "$out/db" --model "$model" -q)
               "${H[@]}" delete demo --yes > /dev/null 2>&1 || true
               "${H[@]}" create demo && for f in samples/archive/*; do "${H[@]}" append demo "$f" > /dev/null; done
               while IFS='|' read -r q want; do   # the answers: samples/archive/2024-01.md, -04.md, -02.md
                 got=$("${H[@]}" query demo "$q" --max-tokens 64 | head -n 1)
                 [ "$got" = "$want" ] && r=ok || r=MISS
                 echo "$r  $q -> $got (want $want)"
               done <<'Q' | tee "$out/demo.txt"
What is the special magic number for the north gate?|4471
What is the pass key?|7302518
What is the special magic number for the backup generator?|9931
Q
               if grep -q "^MISS" "$out/demo.txt"; then
                 echo "eval_cpu: $model misses a demo question (above): it cannot be the shipped model"; exit 1
               fi ;;
    passkey)   /usr/bin/python3 tools/eval/probe_boundary.py --probe passkey --length 16384 --n 40 \
                 --models "$model" --db "$out/db" | tee "$out/passkey.txt" ;;
    vt4k)      "${E[@]}" --tasks vt --lengths 4096 --n 100 --seed 1234 --out "$out/vt4k" ;;
    *) echo "eval_cpu: unknown stage '$s'" >&2; exit 2 ;;
  esac 2>&1 | { grep -v " ok (append" || true; }   # the misses, the tables; a failing stage stops here
done
rm -rf "$out/db"
echo "== done ($(date +%T)): $out"
