#!/usr/bin/env bash
# Install the Debian packages that building and testing hsadb need (Debian bookworm).
# Does nothing when they are all installed already; otherwise needs root (or sudo).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  liblmdb-dev lmdb-utils liburing-dev libopenblas-dev
  libprotobuf-c-dev protobuf-c-compiler libgrpc-dev protobuf-compiler protobuf-compiler-grpc
  python3-grpcio python3-protobuf python3-pytest python3-numpy python3-torch
  # the lexical index: Snowball's English stemmer (libstemmer-dev); bench/bench_lexical.py
  # compares it with SQLite FTS5 through python3's sqlite3 module (in python3 itself)
  libstemmer-dev
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages are installed"
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
