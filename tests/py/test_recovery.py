"""Crash, interruption, full disk and concurrency, through the hsadb binary."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import CHUNK, TIMEOUT, Hsadb, check_stat, rand_bytes

PIECE = 128 << 10


def feed_until_committed(h, proc, name, data, chunks_before, timeout=TIMEOUT):
    """Write `data` into proc's stdin piece by piece until `stats NAME` (another process)
    shows more chunks than `chunks_before`, i.e. a batch of this append has committed.
    Returns the number of bytes written; leaves the pipe open."""
    written = 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        if written < len(data):
            proc.stdin.write(data[written: written + PIECE])
            proc.stdin.flush()
            written += min(PIECE, len(data) - written)
        else:
            time.sleep(0.05)
        assert proc.poll() is None, f"append exited early with {proc.returncode}"
        if h.stat(name)["n_chunks"] > chunks_before:
            return written
    pytest.fail(f"no batch of the append was committed after {written} bytes and "
                f"{timeout} s: appends must commit completed chunks in batches as they fill")


def test_kill9_mid_append(h):
    h("create", "m")
    a = rand_bytes(1000, seed=10)                  # not chunk-aligned: leaves a tail
    h.append("m", a)
    b = rand_bytes(8 << 20, seed=11)
    proc = h.popen("append", "m", "-", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        feed_until_committed(h, proc, "m", b, len(a) // CHUNK)
        proc.kill()
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass

    data = h.read("m")
    assert data[: len(a)] == a, "the acknowledged append was damaged"
    kept = data[len(a):]
    assert kept, "the committed batch was lost"
    assert b.startswith(kept), "bytes after the acknowledged append are not a prefix of B"
    # Batches are committed whole (records + tail): what survives of B ends at a multiple of
    # the chunk size from the start of B.
    assert len(kept) % CHUNK == 0, f"{len(kept)} bytes of B kept: not chunk-aligned"
    st = h.stat("m")
    check_stat(st, data)
    # The memory takes further appends and queries.
    c = rand_bytes(333, seed=12)
    r = h.append("m", c)
    assert r["total_bytes"] == len(data) + len(c)
    assert h.read("m") == data + c
    check_stat(h.stat("m"), data + c)
    h("search", "m", "x", "-k", 2)
    if shutil.which("mdb_stat"):
        p = subprocess.run(["mdb_stat", "-a", str(h.db)], capture_output=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
    else:
        pytest.skip("mdb_stat (lmdb-utils) not installed: LMDB-level check not run")


def test_sigint_mid_append(h):
    h("create", "m")
    a = rand_bytes(700, seed=20)
    h.append("m", a)
    b = rand_bytes(8 << 20, seed=21)
    proc = h.popen("append", "m", "-", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    try:
        feed_until_committed(h, proc, "m", b, len(a) // CHUNK)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    assert b"interrupted" in err, err
    data = h.read("m")
    assert data[: len(a)] == a
    kept = data[len(a):]
    assert kept and b.startswith(kept)
    assert len(kept) % CHUNK == 0, f"{len(kept)} bytes of B kept: not chunk-aligned"
    check_stat(h.stat("m"), data)
    # The report names what was kept.
    assert str(len(kept)).encode() in err, err
    h.append("m", b"next")
    assert h.read("m") == data + b"next"


def test_query_during_append(h):
    """Readers do not wait for a writer: query, search, stats and read run while another
    process appends to the same memory."""
    h("create", "m")
    a = rand_bytes(5000, seed=30)
    h.append("m", a)
    b = rand_bytes(320 << 10, seed=31)
    proc = h.popen("append", "m", "-", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b[: 256 << 10])
        proc.stdin.flush()
        assert proc.poll() is None
        q = h.json("query", "m", "what?", "--max-tokens", 4, timeout=TIMEOUT)
        assert q["evidence"]
        h("search", "m", "x", "-k", 2, timeout=TIMEOUT)
        assert h.read("m")[: len(a)] == a
        assert proc.poll() is None, "the append should still be waiting for input"
        proc.stdin.write(b[256 << 10:])
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert h.read("m") == a + b


def test_second_appender_busy_or_serialised(h):
    """Two appends to one memory from two processes never interleave: the second either waits
    for the first (writers are serialised) or fails with exit 8 (busy)."""
    h("create", "m")
    first = rand_bytes(120_000, seed=40)
    proc = h.popen("append", "m", "-", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    try:
        proc.stdin.write(first[:60_000])
        proc.stdin.flush()
        time.sleep(0.5)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault(
            "p", h("append", "m", "-", input=b"SECOND" * 20, expect=None, timeout=TIMEOUT)))
        t.start()
        time.sleep(1.0)
        proc.stdin.write(first[60_000:])
        out, err = proc.communicate(timeout=TIMEOUT)
        t.join(timeout=2 * TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    second = result["p"]
    data = h.read("m")
    if second.returncode == 0:
        assert data in (first + b"SECOND" * 20, b"SECOND" * 20 + first)
    else:
        assert second.returncode == 8, second.stderr
        assert data == first


# ---- full disk --------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs, when this process may mount one (root with CAP_SYS_ADMIN)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a 3 MiB tmpfs")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full(small_fs):
    h = Hsadb(small_fs / "db")
    h("create", "m")
    a = rand_bytes(640 + 17, seed=50)
    h.append("m", a)
    p = h("append", "m", "-", input=rand_bytes(6 << 20, seed=51), expect=7)
    assert p.stderr.startswith(b"hsadb: append: "), p.stderr
    data = h.read("m")
    assert data[: len(a)] == a, "content acknowledged before the disk filled was damaged"
    check_stat(h.stat("m"), data)
    # Space freed by a delete is used again.
    h("delete", "m", "--yes")
    h("create", "m2")
    h.append("m2", b"fits")
    assert h.read("m2") == b"fits"
