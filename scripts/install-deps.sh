#!/usr/bin/env bash
# Install the Debian packages hsadb needs (Debian bookworm), by named set:
#
#   scripts/install-deps.sh [SET...] [--list]
#
#   runtime   what the installed CLI and server load: LMDB, liburing, OpenBLAS, gRPC core,
#             protobuf-c, libcrypto (SHA-256), jansson (model files, MCP), xxhash (record
#             checksums), utf8proc (the BPE tokenizer's Unicode classes)
#   build     runtime + the compiler, CMake, pkg-config and the -dev packages (the default:
#             what building and running the CLI, the server and the demo need)
#   test      build + what the tests use: pytest, numpy, grpcio/protobuf and the stub
#             compilers (gRPC tests), lmdb-utils (mdb_stat), man-db (`man -l` of the man page),
#             python3-venv (`pip install ./clients/python` into a venv). The MCP and tokenizer
#             reference tests also need Node.js with npm; without them they say skipped.
#   training  PyTorch for tools/train and the reference tests of the spec (CPU, Debian's
#             python3-torch: about 1 GB with its dependencies, so no other set includes it;
#             without it the ctest `reference` says skipped)
#
# --list prints the packages of the chosen sets and installs nothing. Does nothing when they
# are all installed already; otherwise needs root (or sudo). Footprints of each set on a fresh
# machine: README.md ("Dependencies"), measured with scripts/deps_footprint.py.
set -euo pipefail

RUNTIME=(liblmdb0 liburing2 libopenblas0-pthread libgrpc29 libprotobuf-c1 libssl3 libjansson4 libxxhash0
         libutf8proc2 libstemmer0d)
BUILD=(
  build-essential cmake pkg-config
  liblmdb-dev liburing-dev libopenblas-dev libprotobuf-c-dev protobuf-c-compiler libgrpc-dev
  libssl-dev      # libcrypto: SHA-256 of the weights (model fingerprint) and of API keys
  libjansson-dev  # config.json and the safetensors header (untrusted input), MCP messages
  libxxhash-dev   # XXH3: snapshot digests and per-record checksums (storage/store.c)
  libutf8proc-dev # tokenizer/: Unicode categories and NFC of the BPE pre-tokenizer
  libstemmer-dev  # the lexical index: Snowball's English stemmer
)
TEST=(python3-pytest python3-numpy python3-grpcio python3-protobuf protobuf-compiler
      protobuf-compiler-grpc lmdb-utils man-db python3-venv)
TRAINING=(python3-torch python3-numpy python3-pytest)

sets=()
list=0
for a in "$@"; do
  case "$a" in
    runtime|build|test|training) sets+=("$a") ;;
    --list) list=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: unknown set '$a' (runtime, build, test, training)" >&2; exit 2 ;;
  esac
done
[ ${#sets[@]} -gt 0 ] || sets=(build)

PKGS=()
for s in "${sets[@]}"; do
  case "$s" in
    runtime)  PKGS+=("${RUNTIME[@]}") ;;
    build)    PKGS+=("${RUNTIME[@]}" "${BUILD[@]}") ;;
    test)     PKGS+=("${RUNTIME[@]}" "${BUILD[@]}" "${TEST[@]}") ;;
    training) PKGS+=("${TRAINING[@]}") ;;
  esac
done
mapfile -t PKGS < <(printf '%s\n' "${PKGS[@]}" | awk '!seen[$0]++')

if [ "$list" = 1 ]; then
  printf '%s\n' "${PKGS[@]}"
  exit 0
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages of '${sets[*]}' are installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root (or install sudo) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
