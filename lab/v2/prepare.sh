#!/usr/bin/env bash
# Assemble what a v2 training call carries to the GPU machine, in .carry/v2/ (ignored by git):
#   corpus.txt.gz     the language corpus (tools/train/make_corpus.py --unicode)
#   sources.tar.gz    the machine files the memory tasks read (tools/train/make_sources.py)
#   tokenizer.json    the byte-level BPE vocabulary trained on the corpus (tools/train/tokenizer_train.mjs)
#   lib/              libhsadb_bpe.so and the two libraries it needs (the GPU machine has neither)
# Usage: lab/v2/prepare.sh [CORPUS_MB] [VOCAB]      (defaults 40 MB of text, 8192 ids)
# Then:  device run, carry [".carry/v2"], command: bash lab/v2/gpu_ab.sh MINUTES
set -euo pipefail
cd "$(dirname "$0")/../.."
mb=${1:-40}
vocab=${2:-8192}
out=.carry/v2
mkdir -p "$out/lib"
[ -s "$out/corpus.txt.gz" ] || python3 tools/train/make_corpus.py --out "$out/corpus.txt" --max-mb "$mb" --unicode --gz-max-mb 14
rm -f "$out/corpus.txt"
[ -s "$out/sources.tar.gz" ] || python3 tools/train/make_sources.py --out "$out/sources.tar.gz"
if [ ! -s "$out/tokenizer.json" ]; then
  npm ci --prefix tests/tokenizer --silent
  zcat "$out/corpus.txt.gz" | head -c 20000000 > /tmp/tok-train.txt
  node tools/train/tokenizer_train.mjs --vocab-size "$vocab" --out "$out/tokenizer.json" /tmp/tok-train.txt
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target hsadb_bpe -j2 >/dev/null
cp build/libhsadb_bpe.so "$out/lib/"
for l in libjansson.so.4 libutf8proc.so.2; do cp -L "/usr/lib/x86_64-linux-gnu/$l" "$out/lib/"; done
du -sh "$out"/*
