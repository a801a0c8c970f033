#!/usr/bin/env bash
# tests/install/test_install.sh BUILD_DIR — install hsadb into a temporary prefix and use it
# the way someone outside this tree would:
#   1. the files are there: libhsadb.so + libhsadb.a, hsadb.h, hsadb.pc, the CMake package,
#      the CLI, the man page (rendered by `man -l`), the default model;
#   2. libhsadb.so exports exactly the functions hsadb.h declares;
#   3. tests/install/outside.c, built with `pkg-config --cflags --libs hsadb` and again with
#      find_package(hsadb) (shared and static), creates a memory, appends and reads back;
#   4. the installed CLI, run from another directory without --model or $HSADB_MODEL, finds
#      the installed model and appends and reads back through it.
# Prints one line per check; exits 1 on the first failure.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: test_install.sh BUILD_DIR}" && pwd)
tmp=$(mktemp -d /tmp/hsadb-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install"; }
libdir=$(dirname "$(find "$prefix" -name libhsadb.so -print -quit)")
[ -d "$libdir" ] || fail "no libhsadb.so under $prefix"
for f in "$libdir/libhsadb.a" "$prefix/include/hsadb.h" "$libdir/pkgconfig/hsadb.pc" \
         "$libdir/cmake/hsadb/hsadbConfig.cmake" "$libdir/cmake/hsadb/hsadbConfigVersion.cmake" \
         "$prefix/bin/hsadb" "$prefix/share/man/man1/hsadb.1" \
         "$prefix/share/hsadb/models/hsadb-small/config.json" \
         "$prefix/share/hsadb/models/hsadb-small/model.safetensors"; do
  [ -e "$f" ] || fail "not installed: ${f#$prefix/}"
done
ok "installed files"

if command -v man > /dev/null; then
  MANWIDTH=80 man -l "$prefix/share/man/man1/hsadb.1" 2> "$tmp/man.err" | grep -q "persistent memory database" ||
    fail "man -l hsadb.1 does not render"
  [ ! -s "$tmp/man.err" ] || { cat "$tmp/man.err"; fail "man -l hsadb.1 warns"; }
  ok "man -l renders hsadb(1)"
else
  echo "skipped: man -l (man-db not installed)"
fi

# The shared library exports what hsadb.h declares, nothing else.
nm -D --defined-only "$libdir/libhsadb.so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort > "$tmp/exported"
grep -oE '\bhsadb_[a-z0-9_]+\(' "$src/include/hsadb.h" | tr -d '(' | sort -u > "$tmp/declared"
diff "$tmp/declared" "$tmp/exported" > "$tmp/sym.diff" || { cat "$tmp/sym.diff"; fail "exports differ from hsadb.h (< declared, > exported)"; }
ok "libhsadb.so exports the $(wc -l < "$tmp/exported") functions of hsadb.h only"

# An outside program through pkg-config.
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs hsadb) || fail "pkg-config --cflags --libs hsadb"
cc -std=c11 -Wall -Werror -o "$tmp/outside-pc" "$src/tests/install/outside.c" $flags || fail "cc ... $flags"
ldd "$tmp/outside-pc" | grep -q "$libdir/libhsadb.so" ||
  LD_LIBRARY_PATH=$libdir ldd "$tmp/outside-pc" | grep -q "$libdir/libhsadb.so" || fail "outside-pc does not load the installed libhsadb.so"
LD_LIBRARY_PATH=$libdir "$tmp/outside-pc" "$src/tests/data/tiny" "$tmp/db-pc" || fail "outside program (pkg-config)"
ok "outside program built with: pkg-config --cflags --libs hsadb -> $flags"

# The same program through the CMake package, against the shared and the static library.
mkdir -p "$tmp/cmake-app"
cat > "$tmp/cmake-app/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.24)
project(outside C)
find_package(hsadb 0.1 REQUIRED)
add_executable(outside_shared $src/tests/install/outside.c)
target_link_libraries(outside_shared PRIVATE hsadb::hsadb)
add_executable(outside_static $src/tests/install/outside.c)
target_link_libraries(outside_static PRIVATE hsadb::hsadb_static)
CMAKE
cmake -S "$tmp/cmake-app" -B "$tmp/cmake-app/b" -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/app.log" 2>&1 &&
  cmake --build "$tmp/cmake-app/b" >> "$tmp/app.log" 2>&1 || { cat "$tmp/app.log"; fail "find_package(hsadb) project"; }
LD_LIBRARY_PATH=$libdir "$tmp/cmake-app/b/outside_shared" "$src/tests/data/tiny" "$tmp/db-cm1" || fail "outside_shared"
"$tmp/cmake-app/b/outside_static" "$src/tests/data/tiny" "$tmp/db-cm2" || fail "outside_static"
ldd "$tmp/cmake-app/b/outside_static" | grep -q libhsadb && fail "outside_static loads libhsadb.so"
ok "find_package(hsadb): hsadb::hsadb and hsadb::hsadb_static"

# The installed CLI, elsewhere, with no model named: it uses PREFIX/share/hsadb/models/hsadb-small.
mkdir -p "$tmp/elsewhere"
cd "$tmp/elsewhere"
cli=(env -u HSADB_MODEL -u HSADB_DB "$prefix/bin/hsadb" --device cpu --db "$tmp/elsewhere/db" -q)
"${cli[@]}" create notes || fail "installed hsadb create without --model"
printf 'The pass key is 71432. Remember it. The meeting moved to Thursday at nine o clock.\n' > in.txt
"${cli[@]}" append notes in.txt || fail "installed hsadb append"
"${cli[@]}" read notes | cmp - in.txt || fail "installed hsadb read differs"
want=$(sha256sum "$prefix/share/hsadb/models/hsadb-small/model.safetensors" | cut -c1-64)
"${cli[@]}" --json stats notes | grep -q "\"$want\"" || fail "memory not bound to the installed model ($want)"
ok "installed CLI from $tmp/elsewhere without --model: bound to ${want:0:12}"
echo "test_install: all checks passed"
