"""Data integrity through the hsadb binary (issue 35): snapshots killed part-way, truncated
snapshots, `hsadb check`, writes on a damaged store, and paths in error lines."""
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import Hsadb, rand_bytes

EXIT_CORRUPT = 6


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A database with two memories (one with a tail), shared read-only by the tests."""
    h = Hsadb(tmp_path_factory.mktemp("src") / "db")
    h("create", "m")
    data = rand_bytes(150_000, seed=35)
    h.append("m", data)
    h("create", "small")
    h.append("small", b"tiny memory")
    return h, data


def restore_outcome(h, snap, dest):
    """Restores snap into dest: either it is refused as corrupt (exit 6) and dest holds
    nothing, or it succeeds and every restored memory reads back exactly."""
    p = h("restore", snap, dest, expect=None)
    if not snap.exists():                          # killed before it made the directory
        assert p.returncode == 3, p.stderr
        return "absent"
    if p.returncode != 0:
        assert p.returncode == EXIT_CORRUPT, p.stderr
        assert not dest.exists() or not any(dest.iterdir()), "a refused restore left files"
        return "refused"
    return "restored"


def kill_snapshot_at(h, args, delay):
    proc = h.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


@pytest.mark.parametrize("memory", [True, False], ids=["one-memory", "whole-db"])
def test_snapshot_killed_part_way_never_restores_damaged(source, tmp_path, memory):
    h, data = source
    args = ["snapshot", "--memory", "m"] if memory else ["snapshot"]
    # how long an uninterrupted snapshot takes, to spread the kill points over it
    t0 = time.time()
    h(*args, tmp_path / "full")
    took = time.time() - t0
    rng = random.Random(35)
    outcomes = []
    for i in range(10):
        snap, dest = tmp_path / f"snap{i}", tmp_path / f"rest{i}"
        rc = kill_snapshot_at(h, [*args, snap], took * (i + rng.random()) / 10)
        out = restore_outcome(h, snap, dest)
        outcomes.append((rc, out))
        if out == "restored":
            assert h.read("m", db=dest) == data, f"round {i}: restored memory differs"
            h("check", db=dest)
        elif rc == 0:
            pytest.fail(f"round {i}: a snapshot that finished was refused")
    assert any(o == "refused" for _, o in outcomes), outcomes


def test_snapshot_marker_and_truncation(source, tmp_path):
    h, data = source
    h("snapshot", tmp_path / "s")
    marker = (tmp_path / "s" / "hsadb-snapshot").read_text()
    assert marker.startswith("hsadb-snapshot 1\nkind database\n") and marker.endswith("end\n")
    whole = (tmp_path / "s" / "data.mdb").read_bytes()
    for i, size in enumerate([0, 100, 8192, len(whole) // 2, len(whole) - 4096]):
        (tmp_path / "s" / "data.mdb").write_bytes(whole[:size])
        p = h("restore", tmp_path / "s", tmp_path / f"r{i}", expect=EXIT_CORRUPT)
        assert b"Bad file descriptor" not in p.stderr
        assert not (tmp_path / f"r{i}").exists()
    # the same bytes, one flipped: the digest catches it
    bad = bytearray(whole)
    bad[len(bad) // 2] ^= 0x40
    (tmp_path / "s" / "data.mdb").write_bytes(bytes(bad))
    h("restore", tmp_path / "s", tmp_path / "rflip", expect=EXIT_CORRUPT)
    # no marker at all
    (tmp_path / "s" / "data.mdb").write_bytes(whole)
    os.unlink(tmp_path / "s" / "hsadb-snapshot")
    p = h("restore", tmp_path / "s", tmp_path / "rnomark", expect=EXIT_CORRUPT)
    assert b"completion marker" in p.stderr
    # a cut-short data.mdb opened directly as a database: corrupt, not EBADF
    (tmp_path / "s" / "data.mdb").write_bytes(b"")
    p = h("list", db=tmp_path / "s", expect=EXIT_CORRUPT)
    assert b"Bad file descriptor" not in p.stderr


def test_snapshot_refuses_planted_symlink(source, tmp_path):
    h, _ = source
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    h("snapshot", "--memory", "m", tmp_path / "link", expect=2)
    assert not any(target.iterdir()), "the snapshot followed the symbolic link"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    h("snapshot", tmp_path / "dangling", expect=2)
    assert not (tmp_path / "nowhere").exists()


def model_with(tmp_path, name, **overrides):
    """A model directory: tests/data/tiny's weights with config.json keys overridden."""
    import json
    from conftest import MODEL
    d = tmp_path / name
    d.mkdir()
    cfg = json.loads((MODEL / "config.json").read_text())
    cfg.update(overrides)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").symlink_to((MODEL / "model.safetensors").resolve())
    return d


def test_config_bounds(tmp_path):
    """A huge chunk_topk is refused at load with the key named (it used to load and then
    overflow the stack of every query); the largest allowed one runs queries."""
    h = Hsadb(tmp_path / "db")
    big = model_with(tmp_path, "big", chunk_topk=1_000_000)
    p = h("create", "m", model=big, expect=5)
    assert b"chunk_topk" in p.stderr and b"exceeds" in p.stderr
    wide = model_with(tmp_path, "wide", chunk_topk=4096)
    h("create", "m", model=wide)
    h.append("m", rand_bytes(3000, seed=7), model=wide)
    q = h.json("query", "m", "what?", "--max-tokens", 2, model=wide)
    assert q["evidence"]
    h("search", "m", "what?", "-k", 3, model=wide)


def overflow_pages(path):
    """Page numbers of LMDB overflow runs in data.mdb (page header: pgno, flags & 4)."""
    import struct
    data = path.read_bytes()
    return [p for p in range(2, len(data) // 4096)
            if struct.unpack_from("<H", data, p * 4096 + 10)[0] & 4
            and struct.unpack_from("<Q", data, p * 4096)[0] == p]


def test_check_and_writes_on_damage(tmp_path):
    """`check` reports damage per record with exit 6; a delete over a damaged overflow page
    header is refused (main crashed inside LMDB on such a store); a flipped bit in a record
    is named by its checksum."""
    import struct
    if os.sysconf("SC_PAGESIZE") != 4096:
        pytest.skip("the page offsets below assume 4 KiB pages")
    h = Hsadb(tmp_path / "db")
    for name, seed in (("a", 1), ("b", 2)):
        h("create", name)
        h.append(name, rand_bytes(20_000, seed=seed))
    r = h.json("check")
    assert r["ok"] and r["n_damaged"] == 0 and r["n_records"] > 900, r
    assert h("check", "a").stdout.startswith(b"a: ")
    h("check", "nope", expect=3)
    h("check", "bad/name", expect=2)
    base = (tmp_path / "db" / "data.mdb").read_bytes()
    pages = overflow_pages(tmp_path / "db" / "data.mdb")
    assert len(pages) > 100
    for i, count in enumerate((65535, 1_000_000)):
        db = tmp_path / f"ov{i}"
        db.mkdir()
        bad = bytearray(base)
        struct.pack_into("<I", bad, pages[10 + 37 * i] * 4096 + 12, count)
        (db / "data.mdb").write_bytes(bytes(bad))
        p = h("check", db=db, expect=EXIT_CORRUPT)
        assert b"overflow page header: wrong page count" in p.stdout, p.stdout
        # deleting the memory that holds the damaged run is refused; the other one goes
        outs = [h("delete", m, "--yes", db=db, expect=None) for m in ("a", "b")]
        assert sorted(o.returncode for o in outs) == [0, EXIT_CORRUPT], outs
        refused = next(o for o in outs if o.returncode)
        assert b"refused" in refused.stderr
        h("check", db=db, expect=EXIT_CORRUPT)          # still damaged, not worse
    # one flipped bit inside a K/V block: the checksum names the record
    db = tmp_path / "flip"
    db.mkdir()
    bad = bytearray(base)
    bad[pages[50] * 4096 + 16 + 1000] ^= 0x10
    (db / "data.mdb").write_bytes(bytes(bad))
    r = h.json("check", db=db, expect=EXIT_CORRUPT)
    assert r["n_damaged"] == 1 and r["damage"][0]["record"] == "kv", r
    assert r["damage"][0]["what"] == "checksum mismatch"


def test_error_lines_escape_paths(tmp_path):
    """A path with a newline (or other control bytes) is escaped in the one-line error."""
    h = Hsadb(tmp_path / "db")
    weird = tmp_path / "new\nline\tdb"
    p = h("list", db=weird, expect=3)
    line = p.stderr.decode()
    assert line.count("\n") == 1 and line.endswith("\n"), repr(line)
    assert "new\\nline\\tdb" in line, repr(line)
    p = h("restore", tmp_path / "snap\nshot", tmp_path / "dest", expect=3)
    assert p.stderr.decode().count("\n") == 1, p.stderr


def test_append_id_is_idempotent(tmp_path):
    """append --id: a retry with the same id is answered with the first result and appends
    nothing, also after the first attempt was killed part-way (its committed prefix is the
    answer); other ids and other memories are independent; delete forgets the ids."""
    from conftest import CHUNK
    h = Hsadb(tmp_path / "db")
    h("create", "m")
    h("create", "other")
    first = h.json("append", "m", "-", "--id", "req-1", input=b"first payload " * 10)
    assert first["replayed"] is False and first["bytes"] == 140
    again = h.json("append", "m", "-", "--id", "req-1", input=b"first payload " * 10)
    assert again["replayed"] is True and again["complete"] is True
    assert {k: again[k] for k in ("append_id", "bytes", "chunks", "total_bytes")} == \
           {k: first[k] for k in ("append_id", "bytes", "chunks", "total_bytes")}
    assert h.read("m") == b"first payload " * 10, "the retry appended again"
    h.append("other", b"x")
    assert h.json("append", "other", "-", "--id", "req-1", input=b"y")["replayed"] is False
    h.json("append", "m", "-", "--id", "req-2", input=b"second")
    assert h.read("m") == b"first payload " * 10 + b"second"
    h("append", "m", "-", "--id", "x" * 65, input=b"z", expect=2)
    h("append", "m", "-", "--id", "", input=b"z", expect=2)
    h("check")

    # killed after a batch committed: the retry answers with the kept prefix
    big = rand_bytes(4 << 20, seed=36)
    before = h.stat("m")["n_bytes"]
    proc = h.popen("append", "m", "-", "--id", "big-1", stdin=subprocess.PIPE,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, written = time.time() + 120, 0
    try:
        while time.time() < deadline and h.stat("m")["n_bytes"] == before:
            if written < len(big):
                proc.stdin.write(big[written: written + (128 << 10)])
                proc.stdin.flush()
                written += 128 << 10
            else:
                time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    kept = h.stat("m")["n_bytes"] - before
    assert 0 < kept < len(big), kept
    r = h.json("append", "m", "-", "--id", "big-1", input=big)
    assert r["replayed"] is True and r["complete"] is False and r["bytes"] == kept, r
    assert h.stat("m")["n_bytes"] == before + kept, "the retry appended the payload again"
    assert kept % CHUNK == 0
    h("check")

    # a deleted and re-created memory starts with no ids
    h("delete", "m", "--yes")
    h("create", "m")
    assert h.json("append", "m", "-", "--id", "req-1", input=b"new")["replayed"] is False
    assert h.read("m") == b"new"


def test_query_of_a_memory_shorter_than_a_chunk(tmp_path):
    """No chunk is stored yet, so no evidence: the query must not hand qsort a NULL array
    (UBSan's 'null pointer passed as argument 1' on main; fatal in a sanitizer build with
    halt_on_error, which this test asks for)."""
    h = Hsadb(tmp_path / "db")
    h("create", "m")
    h.append("m", b"short memory")
    env = {"UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    q = h.json("query", "m", "what is stored?", "--max-tokens", 3, env=env)
    assert all(not layer["chunks"] for layer in q["evidence"]), q["evidence"]
    h("search", "m", "stored", "-k", 2, env=env)


def test_restore_killed_part_way_is_never_a_sound_looking_database(source, tmp_path):
    """A restore killed at any point leaves DEST either absent/empty, refused on open as
    corrupt (cut short), or complete: never a database that opens and reads wrong."""
    h, data = source
    snap = tmp_path / "snap"
    h("snapshot", snap)
    t0 = time.time()
    h("restore", snap, tmp_path / "full")
    took = time.time() - t0
    for i in range(8):
        dest = tmp_path / f"r{i}"
        rc = kill_snapshot_at(h, ["restore", snap, dest], took * (i + 0.5) / 8)
        if not dest.exists() or not (dest / "data.mdb").exists():
            continue
        p = h("read", "m", db=dest, expect=None)
        if p.returncode == 0:
            assert p.stdout == data, f"round {i} (exit {rc}): a killed restore reads wrong"
            h("check", db=dest)
        else:
            assert p.returncode in (3, EXIT_CORRUPT), p.stderr
