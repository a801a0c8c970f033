"""End-to-end tests of the Python client package (clients/python, import name hsadb) against
the real `hsadb serve` (tests/py's Server fixture), with Debian's grpcio and protobuf: every
RPC, every kind of append input, streamed queries, errors with their codes and reasons, keys,
TLS, and `pip install` offline. (ctest's pyclient_gen checks the stubs against proto/.)

Run by ctest as `pyclient`, in its own process: tests/py's stubs are generated into a
top-level `hsadb` namespace, which this package's `hsadb` would shadow."""
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "py"))          # tests/py: conftest, grpc_util
sys.path.insert(0, str(HERE.parents[1] / "clients" / "python"))

from conftest import BINARY, CHUNK, MODEL, REPO, Hsadb, rand_bytes  # noqa: E402
from grpc_util import Server  # noqa: E402

import hsadb  # noqa: E402
from hsadb import (AlreadyExistsError, Client, HsadbError, InvalidArgumentError,  # noqa: E402
                   NotFoundError, PermissionDeniedError, UnauthenticatedError)

T = 60

pytestmark = pytest.mark.skipif(
    not (BINARY.is_file() and (MODEL / "model.safetensors").is_file()),
    reason=f"needs the hsadb binary ({BINARY}) and the test model ({MODEL})")


def test_package_is_the_checked_in_one():
    assert Path(hsadb.__file__).resolve().parent == REPO / "clients" / "python" / "hsadb"


@pytest.fixture
def srv(tmp_path):
    (tmp_path / "snaps").mkdir()
    s = Server(tmp_path / "db", args=["--snapshot-dir", tmp_path / "snaps"]).start()
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture
def db(srv):
    with Client(srv.addr, timeout=T) as c:
        yield c


def stored(srv, name):
    """The memory's bytes as the CLI reads them from the server's database directory."""
    return Hsadb(srv.db)("read", name).stdout


def test_health(db, tmp_path):
    db.wait_ready(timeout=10)
    assert db.health() == "SERVING"
    assert db.health("hsadb.v1.Memory") == "SERVING"
    with pytest.raises(NotFoundError):
        db.health("nope")
    with Client("127.0.0.1:1") as c, pytest.raises(hsadb.UnavailableError):
        c.wait_ready(timeout=0.5)


def test_memories_create_get_list_delete(db, srv):
    info = db.create("notes")
    assert isinstance(info, hsadb.MemoryInfo)
    assert (info.name, info.n_bytes, info.n_chunks, info.kv_dtype) == ("notes", 0, 0, info.kv_dtype)
    assert len(info.fingerprint) == 64 and info.created > 0 and info.extra == {}
    for n in ("b", "a", "c"):
        db.create(n)
    assert [m.name for m in db.list()] == ["a", "b", "c", "notes"]
    # all pages are fetched, one memory per call
    assert [m.name for m in db.list(page_size=1)] == ["a", "b", "c", "notes"]
    assert [m.name for m in db.list(start_after="b")] == ["c", "notes"]
    assert db.get("notes").name == "notes"
    db.delete("b")
    assert [m.name for m in db.list()] == ["a", "c", "notes"]

    with pytest.raises(AlreadyExistsError) as e:
        db.create("notes")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert e.value.reason == "HSADB_ERR_EXISTS" and "notes" in e.value.details
    with pytest.raises(NotFoundError) as e:
        db.get("b")
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.NOT_FOUND, "HSADB_ERR_NOTFOUND")
    with pytest.raises(NotFoundError):
        db.delete("b")
    with pytest.raises(InvalidArgumentError) as e:
        db.create("bad/name")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "bad/name" in e.value.details
    with pytest.raises(InvalidArgumentError):
        db.list(page_size=-1)
    assert isinstance(e.value, HsadbError)


def test_append_every_kind_of_input(db, srv, tmp_path):
    db.create("m")
    expect = b""

    def check(r, data):
        nonlocal expect
        expect += data
        assert isinstance(r, hsadb.AppendResult)
        assert (r.bytes, r.total_bytes, r.total_chunks) == (len(data), len(expect), len(expect) // CHUNK)

    data = rand_bytes(5000, 1)
    check(db.append("m", data), data)                                        # bytes
    check(db.append("m", bytearray(b"ba" * 50)), b"ba" * 50)                  # bytearray
    check(db.append("m", memoryview(b"mv" * 40)), b"mv" * 40)                 # memoryview
    text = "héllo wörld — ünïcode ✓\n" * 20
    check(db.append("m", text), text.encode())                                # str
    check(db.append("m", io.BytesIO(data[:3000]), piece_size=700), data[:3000])  # binary file
    check(db.append("m", io.StringIO(text)), text.encode())                   # text file
    p = tmp_path / "f.bin"
    p.write_bytes(data[1000:4000])
    with open(p, "rb") as f:
        check(db.append("m", f, piece_size=1024), data[1000:4000])            # real file
    check(db.append("m", p), data[1000:4000])                                 # Path
    parts = [b"one ", "two ", b"three " * 100, "four"]
    check(db.append("m", iter(parts), piece_size=64),
          b"".join(x.encode() if isinstance(x, str) else x for x in parts))   # iterator
    assert db.get("m").n_appends == 9
    assert stored(srv, "m") == expect


def test_append_streams_in_pieces(db, srv):
    """A generator's items are split into pieces of piece_size and streamed."""
    db.create("big")
    data = rand_bytes(200_000, 2)   # small: the tiny model appends ~60 KB/s on 2 cores
    seen = []

    def gen():
        for i in range(0, len(data), 40_000):
            seen.append(i)
            yield data[i:i + 40_000]

    r = db.append("big", gen(), piece_size=8192, timeout=120)
    assert r.bytes == len(data) and len(seen) == 5
    assert stored(srv, "big") == data


def test_append_errors_keep_nothing(db, srv):
    db.create("m")
    db.append("m", b"kept ")
    with pytest.raises(NotFoundError):
        db.append("nosuch", b"x" * 100)
    with pytest.raises(InvalidArgumentError):
        db.append("bad name", b"x")
    with pytest.raises(TypeError):
        db.append("m", 12345)
    with pytest.raises(ValueError):
        db.append("m", b"x", piece_size=0)

    def bad():   # the input fails half way: its exception surfaces, the append is rolled back
        yield b"y" * 1000
        raise OSError("disk read failed")

    with pytest.raises(OSError, match="disk read failed"):
        db.append("m", bad())
    with pytest.raises(TypeError, match="must yield bytes or str"):
        db.append("m", iter([b"ok", 7]))
    assert stored(srv, "m") == b"kept "
    assert db.get("m").n_bytes == 5


def test_query_streams_pieces_then_evidence(db, srv):
    db.create("q")
    data = rand_bytes(2000, 3) + b" The pass key is 71432. " * 20
    db.append("q", data)
    s = db.query_stream("q", "What is the pass key?", max_tokens=24, evidence_k=3)
    assert isinstance(s, hsadb.QueryStream)
    pieces = list(s)
    a = s.result
    assert isinstance(a, hsadb.Answer) and all(isinstance(p, bytes) for p in pieces)
    assert b"".join(pieces) == a.data and a.text == a.data.decode("utf-8", "replace")
    assert 1 <= a.n_tokens <= 24 and a.stop in ("eos", "max_tokens")
    assert a.layers and all(len(l.chunks) <= 3 for l in a.layers)
    cited = 0
    for layer in a.layers:
        assert isinstance(layer, hsadb.LayerEvidence)
        for c in layer.chunks:
            assert isinstance(c, hsadb.Chunk) and c.byte_offset == c.chunk * CHUNK
            if c.persisted:   # provenance: the stored bytes of the append that wrote them
                cited += 1
                assert c.append_id == 1 and c.data == data[c.byte_offset:c.byte_offset + CHUNK]
    assert cited > 0
    # decoded pieces: the same text, no character split
    assert "".join(db.query_stream("q", "What is the pass key?", max_tokens=24,
                                   evidence_k=3).text()) == a.text
    # the non-streaming form gives the same (greedy) answer
    b = db.query("q", "What is the pass key?", max_tokens=24, evidence_k=3)
    assert (b.data, b.n_tokens) == (a.data, a.n_tokens)
    with pytest.raises(NotFoundError):
        db.query("nosuch", "q")
    with pytest.raises(InvalidArgumentError):
        db.query("q", "x" * 70000)
    with pytest.raises(TypeError, match="no field 'bogus'"):
        db.query("q", "q", bogus=1)


def test_query_cancel(db, srv):
    db.create("q")
    db.append("q", rand_bytes(2000, 4))
    s = db.query_stream("q", "tell me everything", max_tokens=65536)
    got = []
    with pytest.raises(HsadbError) as e:
        for p in s:
            got.append(p)
            if len(got) == 3:
                s.cancel()
    assert e.value.code == grpc.StatusCode.CANCELLED and len(got) == 3 and s.result is None
    t0 = time.time()
    while "Query CANCELLED" not in srv.log() and time.time() - t0 < 20:
        time.sleep(0.05)
    assert "Query CANCELLED" in srv.log()


def test_search(db, srv):
    db.create("s")
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
    data = "".join("Line %d says %s.\n" % (i, words[i % 8]) for i in range(300)).encode()
    db.append("s", data)
    hits = db.search("s", "which line says foxtrot", k=5, mode="lexical")
    assert isinstance(hits, hsadb.SearchResult) and len(hits) == 5 and hits.extra == {}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert isinstance(h, hsadb.Passage) and h.extra == {} and h.append_id == 1
        assert b"foxtrot" in data[h.start:h.end] and h.lexical_rank >= 1 and h.lexical_score > 0
        assert h.data == data[h.text_offset:h.text_offset + len(h.data)]
        assert h.text_offset <= h.start and h.end <= h.text_offset + len(h.data)
    spans = sorted((h.start, h.end) for h in hits)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))      # hits never overlap
    both = db.search("s", "which line says foxtrot", k=3)              # hybrid: both signals shown
    assert len(both) == 3 and all(h.lexical_rank or h.model_rank for h in both)
    assert len(db.search("s", "line")) == 8   # k = 0: the server's default
    with pytest.raises(InvalidArgumentError):
        db.search("s", "q", k=5000)
    with pytest.raises(NotFoundError):
        db.search("nosuch", "q")
    with pytest.raises(ValueError, match="mode must be one of"):
        db.search("s", "q", mode="fuzzy")


def test_snapshot_and_restore(db, srv, tmp_path):
    db.create("a")
    db.append("a", b"alpha " * 100)
    db.create("b")
    snap = db.snapshot("snap-a", memory="a")
    assert isinstance(snap, hsadb.SnapshotResult)
    assert snap.memories == ["a"] and snap.bytes_on_disk > 0
    assert Path(snap.path) == tmp_path / "snaps" / "snap-a"
    full = db.snapshot("snap-all")
    assert sorted(full.memories) == ["a", "b"]
    r = db.restore("snap-a", "restored")
    assert isinstance(r, hsadb.RestoreResult) and Path(r.path) == tmp_path / "snaps" / "restored"
    assert [(m.name, m.n_bytes) for m in r.memories] == [("a", 600)]
    assert Hsadb(r.path)("read", "a").stdout == b"alpha " * 100
    with pytest.raises(AlreadyExistsError):
        db.snapshot("snap-a")
    with pytest.raises(NotFoundError):
        db.restore("nosuch", "x")
    with pytest.raises(NotFoundError):
        db.snapshot("s2", memory="nosuch")


def test_keys(tmp_path):
    def hash_key(k):
        return subprocess.run([str(BINARY), "serve", "--hash-key", k], capture_output=True,
                              check=True).stdout.decode().strip()
    (tmp_path / "keys").write_text(f"{hash_key('writer')} write *\n{hash_key('reader')} read a\n")
    with Server(tmp_path / "db", args=["--keys", tmp_path / "keys"]) as s:
        with Client(s.addr, key="writer", timeout=T) as w:
            w.create("a")
            w.append("a", "written with a key")
            with pytest.raises(PermissionDeniedError) as e:
                w.delete("a")   # needs admin
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert "admin" in e.value.details and e.value.reason is None
        with Client(s.addr, key="reader", timeout=T) as r:
            assert [m.name for m in r.list()] == ["a"]
            assert r.get("a").n_bytes == len("written with a key")
            with pytest.raises(PermissionDeniedError):
                r.append("a", "no")
        for key in (None, "wrong"):
            with Client(s.addr, key=key, timeout=T) as c, pytest.raises(UnauthenticatedError) as e:
                c.list()
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_tls(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True)
    if p.returncode != 0:
        pytest.skip("openssl cannot make a test certificate: " + p.stderr.decode()[-200:])
    with Server(tmp_path / "db", args=["--tls-cert", cert, "--tls-key", key]) as s:
        with Client(s.addr, tls=cert, timeout=T) as c:          # a path to the CA's PEM
            assert c.create("tls").name == "tls"
        with Client(s.addr, tls=cert.read_bytes(), timeout=T) as c:   # the PEM's bytes
            assert [m.name for m in c.list()] == ["tls"]
        with Client(s.addr, timeout=5) as c, pytest.raises(HsadbError) as e:
            c.list()                                            # plain text to a TLS server
        assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_reason_from_error_info():
    """A google.rpc.Status trailer with an ErrorInfo gives its reason (the server may send one)."""
    from hsadb.errors import reason_of

    def field(num, payload):
        return bytes([num << 3 | 2, len(payload)]) + payload
    info = field(1, b"MEMORY_NOT_FOUND") + field(2, b"hsadb.v1")
    any_ = field(1, b"type.googleapis.com/google.rpc.ErrorInfo") + field(2, info)
    status = bytes([0x08, 5]) + field(2, b"not found") + field(3, any_)
    assert reason_of("not found: x", [("grpc-status-details-bin", status)]) == "MEMORY_NOT_FOUND"
    assert reason_of("not found: x", [("grpc-status-details-bin", b"\xff")]) == "HSADB_ERR_NOTFOUND"
    assert reason_of("the key has no admin grant on memory 'a'") is None


def test_pip_install_offline(tmp_path):
    """`pip install ./clients/python` works offline with Debian's grpcio and protobuf."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "clients" / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    p = subprocess.run([str(py), "-c", "import hsadb, sys; print(hsadb.__file__); "
                        "print(sorted(hsadb.Client('127.0.0.1:1')._rpc))"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    where, methods = p.stdout.splitlines()
    assert str(venv) in where
    assert methods == str(sorted(["Append", "CreateMemory", "DeleteMemory", "GetMemory",
                                  "ListMemories", "Query", "Restore", "Search", "Snapshot"]))



def test_example_agent_client(srv):
    """examples/agent_client.py runs on the package (no protoc at start)."""
    p = subprocess.run(["/usr/bin/python3", str(REPO / "examples" / "agent_client.py"),
                        "--addr", srv.addr], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "created memory agent-demo" in p.stdout and "append 1: 308 bytes, 4 chunks" in p.stdout
    assert "tokens, stop:" in p.stdout and "layer 0:" in p.stdout, p.stdout
    assert "append 1 @ byte" in p.stdout
    assert stored(srv, "agent-demo").startswith(b"<user> Hi! I'm planning a trip to Lisbon")
    # a second run appends again; an error is one line with the status
    p = subprocess.run(["/usr/bin/python3", str(REPO / "examples" / "agent_client.py"),
                        "--addr", srv.addr, "--memory", "bad/name"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "INVALID_ARGUMENT" in p.stderr, p.stderr
