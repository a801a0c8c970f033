"""End-to-end tests of the hsadb command-line tool: commands, output, exit codes."""
import json
import os
import re
import shutil
import time

import pytest

from conftest import CHUNK, MODEL2, Hsadb, _is_model, check_stat, rand_bytes

TEXT = b"".join(
    b"Entry %d: the courier code for depot %s is %04d, confirmed by %s on day %d.\n"
    % (i, name, (i * 7919) % 10000, who, 1 + i % 28)
    for i, (name, who) in enumerate(
        [(b"North", b"Ada"), (b"East", b"Brook"), (b"West", b"Cyril"), (b"South", b"Dana")] * 30)
)  # about 8 KB of text: 120+ chunks


def needs_model2():
    if not _is_model(MODEL2):
        pytest.skip(f"second test model not found at {MODEL2} (set HSADB_TEST_MODEL2)")


# ---- help, usage ------------------------------------------------------------------------


def test_version_and_help(h):
    p = h("--version")
    assert re.match(rb"hsadb \d+\.\d+\.\d+\n", p.stdout)
    p = h("--help")
    out = p.stdout.decode()
    for cmd in ("create", "list", "stats", "append", "query", "search", "read", "delete",
                "snapshot", "restore"):
        assert cmd in out
        sub = h(cmd, "--help").stdout.decode()
        assert sub.startswith("Usage: hsadb"), sub
        assert "Exit status" in sub
    assert "130" in out


def test_usage_errors(h):
    h(expect=2)                                   # no command
    h("frobnicate", expect=2)                     # unknown command
    h("list", "--no-such-option", expect=2)
    h("create", expect=2)                         # missing NAME
    h("create", "a", "b", expect=2)               # extra argument
    h("query", "m", expect=2)                     # missing QUESTION
    h("query", "m", "q", "--max-tokens", "many", expect=2)
    h("--device", "tpu", "list", expect=2)
    h("read", "m", "--json", expect=2)


@pytest.mark.parametrize("name", ["a b", "a/b", "", "x" * 129, "caf\u00e9", "..?"])
def test_bad_memory_name(h, name):
    p = h("create", name, expect=2)
    assert b"memory name" in p.stderr
    h("stats", name, expect=2)


# ---- create, list, stats, delete --------------------------------------------------------


def test_create_list_stats(h):
    p = h("create", "notes")
    assert b"notes" in p.stdout
    h("create", "other.v2_x-1")
    listed = h.json("list")
    assert [m["name"] for m in listed["memories"]] == ["notes", "other.v2_x-1"]
    m = listed["memories"][0]
    assert re.fullmatch(r"[0-9a-f]{64}", m["fingerprint"]), m
    assert m["n_chunks"] == 0 and m["n_bytes"] == 0 and m["n_appends"] == 0
    assert abs(m["created"] - time.time()) < 600
    text = h("list").stdout.decode()
    assert "notes" in text and m["fingerprint"][:12] in text
    st = h.stat("notes")
    assert st["name"] == "notes" and st["fingerprint"] == m["fingerprint"]
    out = h("stats", "notes").stdout.decode()
    assert m["fingerprint"] in out and "chunks:" in out


def test_duplicate_create(h):
    h("create", "notes")
    p = h("create", "notes", expect=4)
    assert p.stderr.startswith(b"hsadb: create: ")


def test_unknown_memory(h):
    h("create", "present")
    for args in (("stats", "absent"), ("read", "absent"), ("delete", "absent", "--yes"),
                 ("query", "absent", "what?"), ("search", "absent", "what?"),
                 ("snapshot", str(h.db.parent / "snap"), "--memory", "absent")):
        p = h(*args, expect=3)
        assert b"absent" in p.stderr, args
    p = h("append", "absent", "-", input=b"x", expect=3)


def test_missing_database(tmp_path):
    h = Hsadb(tmp_path / "nowhere")
    h("list", expect=3)
    h("stats", "x", expect=3)
    assert not (tmp_path / "nowhere").exists()


def test_bad_model(h, tmp_path):
    p = h("create", "x", model=tmp_path / "no-model-here", expect=5)
    assert b"no-model-here" in p.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    h("create", "x", model=tmp_path / "broken", expect=5)


def test_env_defaults(tmp_path):
    """HSADB_DB and HSADB_MODEL stand for --db and --model."""
    from conftest import BINARY, MODEL, clean_env
    import subprocess
    env = clean_env({"HSADB_DB": str(tmp_path / "envdb"), "HSADB_MODEL": str(MODEL)})
    p = subprocess.run([str(BINARY), "create", "e"], env=env, capture_output=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(BINARY), "--json", "list"], env=env, capture_output=True)
    assert [m["name"] for m in json.loads(p.stdout)["memories"]] == ["e"]


def test_gpu_env_checked(tmp_path):
    """The CUDA variables the CLI maps onto the db options: a bad value is a usage error that
    names the variable and writes nothing; a good one is accepted on the CPU too."""
    from conftest import BINARY, MODEL, clean_env
    import subprocess
    base = [str(BINARY), "--db", str(tmp_path / "db"), "--model", str(MODEL), "--device", "cpu"]
    for var, val in [("HSADB_CUDA_GEMM", "fp16"), ("HSADB_GPU_KV_CHUNKS", "-3"),
                     ("HSADB_CUDA_ATTN", "mma"), ("HSADB_CUDA_GRAPHS", "off")]:
        p = subprocess.run(base + ["create", "g"], env=clean_env({var: val}), capture_output=True)
        assert p.returncode == 2 and var.encode() in p.stderr, (var, p.returncode, p.stderr)
        assert not (tmp_path / "db").exists() or b"g " not in subprocess.run(
            base + ["list"], env=clean_env(), capture_output=True).stdout
    ok = {"HSADB_CUDA_GEMM": "tf32", "HSADB_GPU_KV_CHUNKS": "40", "HSADB_CUDA_ATTN": "tile",
          "HSADB_CUDA_GRAPHS": "0"}
    p = subprocess.run(base + ["create", "g"], env=clean_env(ok), capture_output=True)
    assert p.returncode == 0, p.stderr


def test_delete(h):
    h("create", "keep")
    h("create", "gone")
    h.append("gone", TEXT[:1000])
    h("delete", "gone", expect=2)                 # no terminal, no --yes: refused
    assert h.stat("gone")["n_bytes"] == 1000
    d = h.json("delete", "gone", "--yes")
    assert d["deleted"] == "gone" and d["n_bytes"] == 1000
    h("stats", "gone", expect=3)
    assert [m["name"] for m in h.json("list")["memories"]] == ["keep"]
    h("create", "gone")                           # the name is free again, memory empty
    assert h.read("gone") == b""


# ---- append and read --------------------------------------------------------------------


def test_append_file_stdin_empty(h, tmp_path):
    h("create", "m")
    f = tmp_path / "in.txt"
    f.write_bytes(TEXT[:100])
    r1 = h.json("append", "m", str(f))
    assert r1["bytes"] == 100 and r1["total_bytes"] == 100 and r1["append_id"] >= 1
    r2 = h.json("--nosync", "append", "m", "-", input=TEXT[100:177])   # fast mode
    assert r2["bytes"] == 77 and r2["total_bytes"] == 177
    assert r2["append_id"] > r1["append_id"]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert h.json("append", "m", str(empty))["bytes"] == 0
    assert h.append("m", b"")["bytes"] == 0
    p = h("append", "m", input=TEXT[177:300])     # FILE omitted = stdin
    assert b"appended 123 bytes" in p.stdout
    data = h.read("m")
    assert data == TEXT[:300]
    st = h.stat("m")
    check_stat(st, data)
    assert st["n_appends"] in (3, 5)              # empty appends may or may not count


def test_reads_non_aligned(h):
    h("create", "m")
    sizes = [1, 63, 64, 65, 127, 200, 1000, 3]
    parts = [rand_bytes(n, seed=n) for n in sizes]
    for i, part in enumerate(parts):
        r = h.append("m", part)
        assert r["bytes"] == len(part)
        assert r["total_bytes"] == sum(sizes[: i + 1])
    whole = b"".join(parts)
    data = h.read("m")
    assert data == whole
    check_stat(h.stat("m"), whole)
    for off, length in ((0, 1), (1, 64), (63, 2), (64, 64), (100, 1000), (1500, 100),
                        (len(whole) - 1, 10), (len(whole), 5), (len(whole) + 10, 5)):
        got = h.read("m", "--offset", off, "--length", length)
        assert got == whole[off: off + length], (off, length)
    assert h.read("m", "--offset", 1000) == whole[1000:]


def test_large_random_append(h, tmp_path):
    h("create", "big")
    data = rand_bytes((1 << 20) + 4097, seed=2)   # two 1 MiB read pieces, not chunk-aligned
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    p = h("append", "big", str(f), "--progress")
    err = p.stderr.decode()
    assert "%" in err and "tok/s" in err, err           # progress with percent (size known)
    assert re.search(rb"appended %d bytes .* %d chunks" % (len(data), len(data) // CHUNK),
                     p.stdout), p.stdout
    assert h.read("big") == data
    st = h.stat("big")
    check_stat(st, data)
    assert st["store_bytes"] > 0


def test_append_progress_from_pipe_has_no_percent(h):
    h("create", "m")
    p = h("append", "m", "-", "--progress", input=rand_bytes(100_000, seed=3))
    err = p.stderr.decode()
    assert "tok/s" in err and "%" not in err, err


def test_unreadable_input(h, tmp_path):
    h("create", "m")
    p = h("append", "m", str(tmp_path / "does-not-exist.txt"), expect=3)
    assert b"does-not-exist.txt" in p.stderr
    p = h("append", "m", str(tmp_path), expect=3)      # a directory
    assert str(tmp_path).encode() in p.stderr
    assert h.stat("m")["n_bytes"] == 0


# ---- query and search -------------------------------------------------------------------


@pytest.fixture
def notes(h):
    h("create", "notes")
    h.append("notes", TEXT[:3000])
    h.append("notes", TEXT[3000:])
    return h


def check_ref(ref, data, n_appends, score_key):
    """A retrieved chunk's provenance points at the stored bytes."""
    assert ref["byte_offset"] == ref["chunk"] * CHUNK, ref
    assert 0 <= ref[score_key] <= 1.0 + 1e-5, ref
    text = ref["text"].encode("utf-8")  # TEXT is ASCII, so the JSON string is exact
    assert len(text) == CHUNK, ref
    if ref["persisted"]:
        assert ref["byte_offset"] + CHUNK <= len(data), ref
        assert text == data[ref["byte_offset"]: ref["byte_offset"] + CHUNK], ref
        assert 1 <= ref["append_id"] <= n_appends, ref
        assert abs(ref["time"] - time.time()) < 3600, ref


def test_query_text(notes):
    p = notes("query", "notes", "What is the courier code for depot East?", "--max-tokens", 12)
    out = p.stdout.decode(errors="replace")
    assert "evidence, HSA layer" in out, out
    assert re.search(r"^\s+[0-9.]+\s+\d+\s+\d+\s+\d+\s+\d{4}-\d\d-\d\dT", out, re.M), out
    assert b"tokens, stop:" in p.stderr
    p = notes("query", "notes", "Who confirmed entry 3?", "--max-tokens", 4, "--no-evidence")
    assert b"evidence" not in p.stdout


def test_query_json_evidence(notes):
    data = notes.read("notes")
    st = notes.stat("notes")
    q = notes.json("query", "notes", "What", "is", "the", "code", "for", "depot", "West?",
                   "--max-tokens", 12, "--evidence", 4)
    assert q["question"] == "What is the code for depot West?"
    assert isinstance(q["answer"], str)
    assert 1 <= q["n_tokens"] <= 12 and q["stop"] in ("eos", "max_tokens")
    assert q["stop"] == "eos" or q["n_tokens"] == 12
    assert q["evidence"], q
    for layer in q["evidence"]:
        assert isinstance(layer["layer"], int)
        chunks = layer["chunks"]
        assert 1 <= len(chunks) <= 4, layer
        weights = [c["weight"] for c in chunks]
        assert weights == sorted(weights, reverse=True), weights
        for c in chunks:
            check_ref(c, data, st["n_appends"], "weight")
    assert notes.stat("notes") == st                    # the question is not stored


def test_query_sampling_is_seeded(notes):
    args = ("query", "notes", "Which depot?", "--max-tokens", 8, "--temperature", 0.8,
            "--top-p", 0.9, "--seed", 42, "--no-evidence")
    a = notes.json(*args)["answer"]
    b = notes.json(*args)["answer"]
    assert a == b


def test_search(notes):
    """Every mode lists non-overlapping passages, best first, whose text is the stored bytes."""
    data = notes.read("notes")
    st = notes.stat("notes")
    for mode in ("hybrid", "lexical", "model"):
        r = notes.json("search", "notes", "courier", "code", "North", "-k", 3, "--mode", mode)
        assert r["mode"] == mode and 1 <= len(r["hits"]) <= 3, r
        scores = [x["score"] for x in r["hits"]]
        assert scores == sorted(scores, reverse=True)
        spans = sorted((x["start"], x["end"]) for x in r["hits"])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
        for x in r["hits"]:
            assert 0 <= x["start"] < x["end"] <= len(data) and x["end"] - x["start"] <= 512, x
            text = x["text"].encode("utf-8")  # TEXT is ASCII, so the JSON string is exact
            assert text == data[x["text_start"]: x["text_start"] + len(text)], x
            assert x["text_start"] <= x["start"] and x["text_start"] + len(text) >= x["end"], x
            assert 1 <= x["append_id"] <= x["last_append_id"] <= st["n_appends"], x
            assert abs(x["time"] - time.time()) < 3600, x
    out = notes("search", "notes", "Dana", "-k", 2).stdout.decode()
    assert len(re.findall(r"^\d+\. bytes \d+-\d+ ", out, re.M)) == 2, out


def test_search_short_memory(h):
    """Fewer than 64 bytes: no chunk exists, search finds nothing, query still answers."""
    h("create", "tiny")
    h.append("tiny", b"too short")
    assert h.json("search", "tiny", "anything")["hits"] == []
    q = h.json("query", "tiny", "anything?", "--max-tokens", 4)
    assert all(c["persisted"] == 0 or c["chunk"] == 0 for l in q["evidence"] for c in l["chunks"])


def test_json_escapes_arbitrary_bytes(h):
    """Chunks with quotes, backslashes, control bytes and invalid UTF-8 still give valid JSON."""
    h("create", "bin")
    h.append("bin", (b'"\\\x00\x01\x1f\x7f\xff\xfe\xc3\x28 \xe2\x82\xac' * 40) + rand_bytes(5000, 9))
    r = h.json("search", "bin", "x", "-k", 16)
    assert r["hits"]
    q = h.json("query", "bin", "\u20ac?", "--max-tokens", 8)
    assert isinstance(q["answer"], str)
    out = h("search", "bin", "x", "-k", 4).stdout
    assert b"\x00" not in out and b"\x1f" not in out      # text output escapes them


def test_query_wrong_model(notes):
    needs_model2()
    p = notes("query", "notes", "code?", model=MODEL2, expect=5)
    assert p.stderr.startswith(b"hsadb: query: ")
    notes("search", "notes", "code?", model=MODEL2, expect=5)
    notes("append", "notes", "-", input=b"more", model=MODEL2, expect=5)
    assert notes.read("notes") == TEXT


# ---- snapshot and restore ---------------------------------------------------------------


def test_snapshot_restore_whole(notes, tmp_path):
    notes("create", "second")
    second = rand_bytes(5000, seed=5)
    notes.append("second", second)
    snap = tmp_path / "snap"
    s = notes.json("snapshot", str(snap))
    assert sorted(s["memories"]) == ["notes", "second"] and s["bytes_on_disk"] > 0
    notes.append("notes", b"after the snapshot")    # not in the snapshot
    dest = tmp_path / "restored"
    r = notes.json("restore", str(snap), str(dest))
    assert r["model_checked"] is True
    assert sorted(m["name"] for m in r["memories"]) == ["notes", "second"]
    back = Hsadb(dest)
    assert back.read("notes") == TEXT
    assert back.read("second") == second
    check_stat(back.stat("second"), second)
    back.append("notes", b"restored memories take appends")
    assert back.read("notes") == TEXT + b"restored memories take appends"
    q = back.json("query", "notes", "code for depot South?", "--max-tokens", 4)
    assert q["evidence"]
    # Destination not empty: refused, nothing overwritten.
    notes("snapshot", str(snap), expect=4)
    notes("restore", str(snap), str(dest), expect=4)
    assert back.read("second") == second


def test_snapshot_one_memory(notes, tmp_path):
    notes("create", "other")
    notes.append("other", b"x" * 100)
    snap = tmp_path / "one"
    notes("snapshot", str(snap), "--memory", "notes")
    dest = tmp_path / "restored"
    notes("restore", str(snap), str(dest))
    back = Hsadb(dest)
    assert [m["name"] for m in back.json("list")["memories"]] == ["notes"]
    assert back.read("notes") == TEXT


def test_restore_without_model_check(notes, tmp_path):
    """No model configured: restore skips the check with a note (or --no-check)."""
    snap = tmp_path / "snap"
    notes("snapshot", str(snap))
    from conftest import BINARY, clean_env
    import subprocess
    p = subprocess.run([str(BINARY), "restore", str(snap), str(tmp_path / "r1")],
                       env=clean_env(), capture_output=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert b"without the model check" in p.stderr
    notes("restore", str(snap), str(tmp_path / "r2"), "--no-check")
    assert Hsadb(tmp_path / "r2").read("notes") == TEXT
    notes("restore", str(tmp_path / "nope"), str(tmp_path / "r3"), expect=3)


def test_restore_other_model_refused(notes, tmp_path):
    needs_model2()
    snap = tmp_path / "snap"
    notes("snapshot", str(snap))
    dest = tmp_path / "restored"
    p = notes("restore", str(snap), str(dest), model=MODEL2, expect=5)
    assert p.stderr.startswith(b"hsadb: restore: ")
    assert not dest.exists() or not any(dest.iterdir()), list(dest.iterdir())


# ---- damaged store ----------------------------------------------------------------------


def test_corrupt_store(notes):
    data_mdb = notes.db / "data.mdb"
    assert data_mdb.is_file(), list(notes.db.iterdir())
    size = data_mdb.stat().st_size
    data_mdb.write_bytes(rand_bytes(max(size, 1 << 16), seed=6))
    for args in (("list",), ("stats", "notes"), ("read", "notes"),
                 ("query", "notes", "code?", "--max-tokens", 2), ("search", "notes", "x"),
                 ("append", "notes", "-"), ("create", "new")):
        p = notes(*args, input=b"abc" if args[0] == "append" else None, expect=6)
        assert p.stderr.startswith(f"hsadb: {args[0]}: ".encode()), p.stderr


def test_corrupt_store_truncated(notes):
    data_mdb = notes.db / "data.mdb"
    with open(data_mdb, "r+b") as f:
        f.truncate(100)
    notes("list", expect=6)
