"""End-to-end tests of `hsadb serve` (the gRPC service, docs/rpc.md) with Debian's grpcio
against the real binary on 127.0.0.1 with an ephemeral port and the tiny random-weight model
(answers are noise; the mechanisms are real)."""
import os
import shutil
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import BINARY, CHUNK, MODEL, Hsadb, clean_env, rand_bytes
from grpc_util import CHANNEL_OPTS, Server, bearer, gen_stubs, pieces

pb, pbg, hpb, hpbg = gen_stubs()
T = 60  # seconds per RPC


@pytest.fixture
def srv(tmp_path):
    (tmp_path / "snaps").mkdir()
    s = Server(tmp_path / "db", args=["--snapshot-dir", tmp_path / "snaps"]).start()
    yield s
    assert s.stop() == 0, s.log()


def stub(s):
    return pbg.MemoryStub(s.channel())


def code_of(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        r = fn(*a, **kw)
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, pb.QueryResponse)):
            list(r)
    return e.value.code()


def test_health(srv):
    h = hpbg.HealthStub(srv.channel())
    assert h.Check(hpb.HealthCheckRequest(), timeout=T).status == hpb.HealthCheckResponse.SERVING
    assert h.Check(hpb.HealthCheckRequest(service="hsadb.v1.Memory"), timeout=T).status == \
        hpb.HealthCheckResponse.SERVING
    assert code_of(h.Check, hpb.HealthCheckRequest(service="nope"), timeout=T) == \
        grpc.StatusCode.NOT_FOUND


def test_every_rpc(srv, tmp_path):
    m = stub(srv)
    info = m.CreateMemory(pb.CreateMemoryRequest(name="notes"), timeout=T)
    assert info.name == "notes" and info.n_bytes == 0 and len(info.fingerprint) == 64
    assert code_of(m.CreateMemory, pb.CreateMemoryRequest(name="notes"), timeout=T) == \
        grpc.StatusCode.ALREADY_EXISTS
    assert code_of(m.CreateMemory, pb.CreateMemoryRequest(name="bad/name"), timeout=T) == \
        grpc.StatusCode.INVALID_ARGUMENT
    data = rand_bytes(3000, 1) + b"The pass key is 71432. " * 40
    r = m.Append(pieces("notes", data, 1000), timeout=T)
    assert (r.append_id, r.bytes, r.chunks, r.total_bytes) == (1, len(data), len(data) // CHUNK, len(data))
    r2 = m.Append(pieces("notes", b"x" * 100), timeout=T)
    assert r2.append_id == 2 and r2.total_bytes == len(data) + 100
    data += b"x" * 100
    st = m.GetMemory(pb.GetMemoryRequest(name="notes"), timeout=T)
    assert (st.n_bytes, st.n_chunks, st.n_appends, st.tail_bytes) == \
        (len(data), len(data) // CHUNK, 2, len(data) % CHUNK)
    # what the server stored is what was sent (read back by the CLI while the server runs)
    assert Hsadb(srv.db)("read", "notes").stdout == data
    m.CreateMemory(pb.CreateMemoryRequest(name="other"), timeout=T)
    names = [x.name for x in m.ListMemories(pb.ListMemoriesRequest(), timeout=T).memories]
    assert names == ["notes", "other"]
    page = m.ListMemories(pb.ListMemoriesRequest(page_size=1), timeout=T)
    assert [x.name for x in page.memories] == ["notes"] and page.next_start_after == "notes"
    page = m.ListMemories(pb.ListMemoriesRequest(page_size=1, start_after="notes"), timeout=T)
    assert [x.name for x in page.memories] == ["other"] and page.next_start_after == ""
    # query: pieces as generated, then the evidence
    msgs = list(m.Query(pb.QueryRequest(memory="notes", question="What is the pass key?",
                                        max_tokens=40, evidence_k=4), timeout=T))
    assert len(msgs) >= 2 and all(x.WhichOneof("kind") == "piece" for x in msgs[:-1])
    res = msgs[-1].result
    assert msgs[-1].WhichOneof("kind") == "result"
    assert b"".join(x.piece for x in msgs[:-1]) == res.text
    assert res.stop in ("eos", "max_tokens") and 1 <= res.n_tokens <= 40
    assert len(res.layers) >= 1
    for layer in res.layers:
        assert 1 <= len(layer.chunks) <= 4
        for c in layer.chunks:
            if c.persisted:
                assert c.text == data[c.chunk * CHUNK:(c.chunk + 1) * CHUNK]
                assert c.byte_offset == c.chunk * CHUNK and c.append_id in (1, 2) and c.time > 0
    # search
    hits = m.Search(pb.SearchRequest(memory="notes", question="pass key", k=5), timeout=T).hits
    assert 1 <= len(hits) <= 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert h.text == data[h.text_offset:h.text_offset + len(h.text)] and h.append_id in (1, 2)
        assert h.text_offset <= h.byte_offset < h.end_offset <= h.text_offset + len(h.text)
        assert h.chunk == h.byte_offset // CHUNK and h.model_rank >= 1
    for mode in (pb.SEARCH_MODE_LEXICAL, pb.SEARCH_MODE_MODEL):
        r = m.Search(pb.SearchRequest(memory="notes", question="pass key", k=3, mode=mode,
                                      context_bytes=-1), timeout=T).hits
        assert r and all(h.text == data[h.byte_offset:h.end_offset] for h in r)
        assert all((h.lexical_rank >= 1) == (mode == pb.SEARCH_MODE_LEXICAL) for h in r)
    assert code_of(m.Search, pb.SearchRequest(memory="notes", question="q", passage_bytes=100), timeout=T) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(m.Search, pb.SearchRequest(memory="notes", question="q", k=5000), timeout=T) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(m.Search, pb.SearchRequest(memory="absent", question="q"), timeout=T) == \
        grpc.StatusCode.NOT_FOUND
    # snapshot and restore (server-side directories)
    snap = m.Snapshot(pb.SnapshotRequest(name="s1", memory="notes"), timeout=T)
    assert list(snap.memories) == ["notes"] and snap.bytes_on_disk > 0
    assert os.path.isdir(snap.path)
    full = m.Snapshot(pb.SnapshotRequest(name="s2"), timeout=T)
    assert sorted(full.memories) == ["notes", "other"]
    assert code_of(m.Snapshot, pb.SnapshotRequest(name="s1"), timeout=T) == \
        grpc.StatusCode.ALREADY_EXISTS
    assert code_of(m.Snapshot, pb.SnapshotRequest(name=".."), timeout=T) == \
        grpc.StatusCode.INVALID_ARGUMENT
    rest = m.Restore(pb.RestoreRequest(snapshot="s1", dest="restored"), timeout=T)
    assert [(x.name, x.n_bytes) for x in rest.memories] == [("notes", len(data))]
    assert Hsadb(rest.path)("read", "notes").stdout == data
    assert code_of(m.Restore, pb.RestoreRequest(snapshot="nope", dest="r2"), timeout=T) == \
        grpc.StatusCode.NOT_FOUND
    # delete
    m.DeleteMemory(pb.DeleteMemoryRequest(name="other"), timeout=T)
    assert code_of(m.GetMemory, pb.GetMemoryRequest(name="other"), timeout=T) == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(m.DeleteMemory, pb.DeleteMemoryRequest(name="other"), timeout=T) == \
        grpc.StatusCode.NOT_FOUND


def test_snapshot_disabled_without_dir(tmp_path):
    with Server(tmp_path / "db") as s:
        m = stub(s)
        m.CreateMemory(pb.CreateMemoryRequest(name="a"), timeout=T)
        assert code_of(m.Snapshot, pb.SnapshotRequest(name="x"), timeout=T) == \
            grpc.StatusCode.FAILED_PRECONDITION


def test_append_streams_large_archive_in_pieces(srv):
    """An archive streamed in many pieces (kept small: the CPU forward pass of the tiny
    model appends ~60 KB/s on the 2-core test machine)."""
    m = stub(srv)
    m.CreateMemory(pb.CreateMemoryRequest(name="big"), timeout=T)
    data = rand_bytes(200_000, 2)
    r = m.Append(pieces("big", data, 8192), timeout=120)
    assert r.bytes == len(data) and r.total_chunks == len(data) // CHUNK
    assert Hsadb(srv.db)("read", "big").stdout == data


def test_concurrent_appends_to_one_memory_are_serialised(srv):
    m = stub(srv)
    m.CreateMemory(pb.CreateMemoryRequest(name="shared"), timeout=T)
    blobs = [bytes([65 + i]) * (64 * 300) for i in range(4)]
    out, errs = [], []

    def run(b):
        try:
            out.append(m.Append(pieces("shared", b, 4096), timeout=T))
        except grpc.RpcError as e:
            errs.append(e)

    ts = [threading.Thread(target=run, args=(b,)) for b in blobs]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errs, errs
    assert sorted(r.append_id for r in out) == [1, 2, 3, 4]
    stored = Hsadb(srv.db)("read", "shared").stdout
    assert len(stored) == sum(map(len, blobs))
    # each append is contiguous (never interleaved)
    assert sorted(stored[i:i + len(blobs[0])] for i in range(0, len(stored), len(blobs[0]))) == blobs


def test_append_waiting_for_the_memory_honours_its_deadline(srv):
    m = stub(srv)
    m.CreateMemory(pb.CreateMemoryRequest(name="w"), timeout=T)
    go = threading.Event()

    def slow():
        yield pb.AppendRequest(memory="w", data=b"1" * 64)
        go.wait(20)
        yield pb.AppendRequest(data=b"1" * 64)

    first = m.Append.future(slow(), timeout=T)
    time.sleep(0.5)
    t0 = time.time()
    assert code_of(m.Append, pieces("w", b"2" * 64), timeout=1) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - t0 < 5
    go.set()
    assert first.result().total_bytes == 128
    assert Hsadb(srv.db)("read", "w").stdout == b"1" * 128


def test_cancelled_append_is_rolled_back(srv):
    m = stub(srv)
    m.CreateMemory(pb.CreateMemoryRequest(name="roll"), timeout=T)
    m.Append(pieces("roll", b"k" * 1000), timeout=T)
    gate = threading.Event()

    def gen():
        yield pb.AppendRequest(memory="roll", data=b"a" * 100)
        yield pb.AppendRequest(data=b"b" * 100)
        gate.wait(30)  # the stream never finishes

    fut = m.Append.future(gen(), timeout=T)
    time.sleep(0.5)
    fut.cancel()
    gate.set()
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()
    deadline = time.time() + 10
    while "aborted_after" not in srv.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "aborted_after" in srv.log(), srv.log()
    st = m.GetMemory(pb.GetMemoryRequest(name="roll"), timeout=T)
    assert st.n_bytes == 1000 and st.n_appends >= 1
    assert Hsadb(srv.db)("read", "roll").stdout == b"k" * 1000
    # the memory is free again
    assert m.Append(pieces("roll", b"c" * 10), timeout=T).total_bytes == 1010


def test_query_cancellation_stops_generation(srv):
    m = stub(srv)
    m.CreateMemory(pb.CreateMemoryRequest(name="q"), timeout=T)
    m.Append(pieces("q", rand_bytes(2000, 3)), timeout=T)
    call = m.Query(pb.QueryRequest(memory="q", question="tell me everything", max_tokens=65536),
                   timeout=T)
    got = []
    for msg in call:
        got.append(msg)
        if len(got) == 3:
            break
    assert all(x.WhichOneof("kind") == "piece" for x in got)
    call.cancel()
    t0 = time.time()
    while "Query CANCELLED" not in srv.log() and time.time() - t0 < 20:
        time.sleep(0.05)
    assert "Query CANCELLED" in srv.log(), srv.log()
    assert time.time() - t0 < 10  # stopped long before 65536 tokens
    # a deadline stops a query too
    assert code_of(m.Query, pb.QueryRequest(memory="q", question="x", max_tokens=65536),
                   timeout=0.5) == grpc.StatusCode.DEADLINE_EXCEEDED
    # the server still answers
    assert m.GetMemory(pb.GetMemoryRequest(name="q"), timeout=T).n_bytes == 2000


def test_slow_query_does_not_block_other_calls(srv):
    """Other calls proceed while a long query runs. (Search/Query on the *same* memory wait
    for it inside the engine: hsadb_db_landmarks takes the landmark cache's write lock on
    every query; see docs/rpc.md, known limitations.)"""
    m = stub(srv)
    for name in ("s", "t"):
        m.CreateMemory(pb.CreateMemoryRequest(name=name), timeout=T)
        m.Append(pieces(name, rand_bytes(1000, 4)), timeout=T)
    call = m.Query(pb.QueryRequest(memory="s", question="go on", max_tokens=65536), timeout=T)
    next(call)
    t0 = time.time()
    for _ in range(5):
        m.GetMemory(pb.GetMemoryRequest(name="s"), timeout=T)
        m.Search(pb.SearchRequest(memory="t", question="x", k=2), timeout=T)
        m.Append(pieces("t", b"more"), timeout=T)
    assert time.time() - t0 < 5
    call.cancel()


def test_health_answers_while_every_worker_is_busy(tmp_path):
    with Server(tmp_path / "db", args=["--workers", "2"]) as s:
        ch = s.channel()
        m = pbg.MemoryStub(ch)
        for n in ("a", "b"):
            m.CreateMemory(pb.CreateMemoryRequest(name=n), timeout=T)
        go = threading.Event()

        def idle(name):
            yield pb.AppendRequest(memory=name)
            go.wait(20)

        futs = [m.Append.future(idle(n), timeout=T) for n in ("a", "b")]
        time.sleep(0.5)
        try:
            assert hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest(), timeout=5).status == \
                hpb.HealthCheckResponse.SERVING
            # a Memory call waits for a free worker (here: until its deadline)
            assert code_of(m.GetMemory, pb.GetMemoryRequest(name="a"), timeout=1) == \
                grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            go.set()
        assert [f.result().total_bytes for f in futs] == [0, 0]


def test_malformed_unknown_and_oversized(srv):
    ch = srv.channel()
    m = pbg.MemoryStub(ch)
    m.CreateMemory(pb.CreateMemoryRequest(name="x"), timeout=T)
    garbage = b"\xff\xff\xff\xff\xff"
    for method in ("CreateMemory", "GetMemory", "Search", "Snapshot"):
        raw = ch.unary_unary(f"/hsadb.v1.Memory/{method}")
        assert code_of(raw, garbage, timeout=T) == grpc.StatusCode.INVALID_ARGUMENT, method
    raw_q = ch.unary_stream("/hsadb.v1.Memory/Query")
    assert code_of(raw_q, garbage, timeout=T) == grpc.StatusCode.INVALID_ARGUMENT
    raw_a = ch.stream_unary("/hsadb.v1.Memory/Append")
    assert code_of(raw_a, iter([garbage]), timeout=T) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(m.Append, iter([]), timeout=T) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(m.Append, iter([pb.AppendRequest(data=b"no name")]), timeout=T) == \
        grpc.StatusCode.INVALID_ARGUMENT
    for path in ("/hsadb.v1.Memory/Nope", "/no.such.Service/Call", "/grpc.health.v1.Health/Nope"):
        assert code_of(ch.unary_unary(path), b"", timeout=T) == grpc.StatusCode.UNIMPLEMENTED, path
    # a single message over the 4 MiB limit
    big = pb.AppendRequest(memory="x", data=b"z" * (5 << 20))
    assert code_of(m.Append, iter([big]), timeout=T) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(m.CreateMemory, pb.CreateMemoryRequest(name="n" * (5 << 20)), timeout=T) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(m.Search, pb.SearchRequest(memory="x", question="q" * 70000), timeout=T) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert m.GetMemory(pb.GetMemoryRequest(name="x"), timeout=T).n_bytes == 0


def test_restart_between_append_and_query(tmp_path):
    data = rand_bytes(5000, 5) + b"remember: the door code is 4471. " * 30
    with Server(tmp_path / "db") as s:
        m = stub(s)
        m.CreateMemory(pb.CreateMemoryRequest(name="r"), timeout=T)
        r = m.Append(pieces("r", data, 777), timeout=T)
        q1 = list(m.Query(pb.QueryRequest(memory="r", question="door code?", max_tokens=20),
                          timeout=T))[-1].result
    with Server(tmp_path / "db") as s:
        m = stub(s)
        st = m.GetMemory(pb.GetMemoryRequest(name="r"), timeout=T)
        assert (st.n_bytes, st.n_appends, st.n_chunks) == (len(data), 1, r.total_chunks)
        q2 = list(m.Query(pb.QueryRequest(memory="r", question="door code?", max_tokens=20),
                          timeout=T))[-1].result
        assert q2.text == q1.text  # greedy: same answer from the same stored memory
    assert Hsadb(tmp_path / "db")("read", "r").stdout == data


def test_graceful_shutdown_lets_an_append_finish(tmp_path):
    s = Server(tmp_path / "db").start()
    m = stub(s)
    m.CreateMemory(pb.CreateMemoryRequest(name="g"), timeout=T)
    go = threading.Event()

    def gen():
        yield pb.AppendRequest(memory="g", data=b"1" * 500)
        go.wait(20)
        yield pb.AppendRequest(data=b"2" * 500)

    fut = m.Append.future(gen(), timeout=T)
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    go.set()
    assert fut.result().total_bytes == 1000
    assert s.proc.wait(timeout=30) == 0, s.log()
    s.stop()
    assert Hsadb(tmp_path / "db")("read", "g").stdout == b"1" * 500 + b"2" * 500


# ---- authentication and authorisation ---------------------------------------------------

KEYS = {"alice": [("write", "alice-*")], "bob": [("admin", "bob-*")],
        "reader": [("read", "alice-*")], "root": [("admin", "*")]}


def hash_key(k):
    p = subprocess.run([str(BINARY), "serve", "--hash-key", k], capture_output=True, check=True,
                       env=clean_env())
    return p.stdout.decode().strip()


@pytest.fixture
def auth_srv(tmp_path):
    lines = ["# test keys"]
    for k, grants in KEYS.items():
        h = hash_key(k)
        assert len(h) == 64
        lines += [f"{h} {role} {pat}" for role, pat in grants]
    (tmp_path / "keys").write_text("\n".join(lines) + "\n")
    (tmp_path / "snaps").mkdir()
    s = Server(tmp_path / "db", args=["--keys", tmp_path / "keys",
                                      "--snapshot-dir", tmp_path / "snaps"]).start()
    yield s
    assert s.stop() == 0, s.log()


def test_auth(auth_srv):
    ch = auth_srv.channel()
    m = pbg.MemoryStub(ch)
    A, B, R, ROOT = bearer("alice"), bearer("bob"), bearer("reader"), bearer("root")
    U = grpc.StatusCode.UNAUTHENTICATED
    D = grpc.StatusCode.PERMISSION_DENIED
    # health needs no key
    assert hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest(), timeout=T).status == \
        hpb.HealthCheckResponse.SERVING
    assert code_of(m.ListMemories, pb.ListMemoriesRequest(), timeout=T) == U
    assert code_of(m.ListMemories, pb.ListMemoriesRequest(), timeout=T, metadata=bearer("mallory")) == U
    assert code_of(m.ListMemories, pb.ListMemoriesRequest(), timeout=T,
                   metadata=(("authorization", "alice"),)) == U
    assert code_of(m.Append, pieces("alice-1", b"x"), timeout=T) == U
    m.CreateMemory(pb.CreateMemoryRequest(name="alice-1"), timeout=T, metadata=A)
    m.CreateMemory(pb.CreateMemoryRequest(name="bob-1"), timeout=T, metadata=B)
    assert code_of(m.CreateMemory, pb.CreateMemoryRequest(name="bob-2"), timeout=T, metadata=A) == D
    m.Append(pieces("alice-1", b"alice's secret " * 20), timeout=T, metadata=A)
    m.Append(pieces("bob-1", b"bob's secret " * 20), timeout=T, metadata=B)
    # cross-tenant: list, read, query, search, append, delete, snapshot
    names = lambda md: [x.name for x in m.ListMemories(pb.ListMemoriesRequest(), timeout=T, metadata=md).memories]
    assert names(A) == ["alice-1"] and names(B) == ["bob-1"] and names(R) == ["alice-1"]
    assert names(ROOT) == ["alice-1", "bob-1"]
    assert code_of(m.GetMemory, pb.GetMemoryRequest(name="bob-1"), timeout=T, metadata=A) == D
    assert code_of(m.GetMemory, pb.GetMemoryRequest(name="alice-1"), timeout=T, metadata=B) == D
    assert code_of(m.Query, pb.QueryRequest(memory="bob-1", question="secret?"), timeout=T, metadata=A) == D
    assert code_of(m.Search, pb.SearchRequest(memory="alice-1", question="secret?"), timeout=T, metadata=B) == D
    assert code_of(m.Append, pieces("bob-1", b"x"), timeout=T, metadata=A) == D
    assert code_of(m.DeleteMemory, pb.DeleteMemoryRequest(name="alice-1"), timeout=T, metadata=B) == D
    assert code_of(m.Snapshot, pb.SnapshotRequest(name="s", memory="alice-1"), timeout=T, metadata=B) == D
    # read-only key: reads, cannot write or delete
    assert m.GetMemory(pb.GetMemoryRequest(name="alice-1"), timeout=T, metadata=R).n_bytes == 300
    assert m.Search(pb.SearchRequest(memory="alice-1", question="secret", k=2), timeout=T, metadata=R).hits
    assert code_of(m.Append, pieces("alice-1", b"x"), timeout=T, metadata=R) == D
    assert code_of(m.DeleteMemory, pb.DeleteMemoryRequest(name="alice-1"), timeout=T, metadata=R) == D
    # write is not admin: alice cannot delete or snapshot even her own memory
    assert code_of(m.DeleteMemory, pb.DeleteMemoryRequest(name="alice-1"), timeout=T, metadata=A) == D
    assert code_of(m.Snapshot, pb.SnapshotRequest(name="s", memory="alice-1"), timeout=T, metadata=A) == D
    # bob (admin on bob-*) snapshots his memory, not the whole database; no restore
    assert list(m.Snapshot(pb.SnapshotRequest(name="b", memory="bob-1"), timeout=T, metadata=B).memories) == ["bob-1"]
    assert code_of(m.Snapshot, pb.SnapshotRequest(name="all"), timeout=T, metadata=B) == D
    assert code_of(m.Restore, pb.RestoreRequest(snapshot="b", dest="r"), timeout=T, metadata=B) == D
    assert sorted(m.Snapshot(pb.SnapshotRequest(name="all"), timeout=T, metadata=ROOT).memories) == \
        ["alice-1", "bob-1"]
    m.DeleteMemory(pb.DeleteMemoryRequest(name="bob-1"), timeout=T, metadata=B)
    assert names(ROOT) == ["alice-1"]


def test_refuses_open_address_without_keys(tmp_path):
    base = [str(BINARY), "--db", str(tmp_path / "db"), "--model", str(MODEL), "serve"]
    p = subprocess.run(base + ["--listen", "0.0.0.0:0"], capture_output=True, timeout=T,
                       env=clean_env())
    assert p.returncode == 2 and b"--keys" in p.stderr, p.stderr
    p = subprocess.run(base + ["--snapshot-dir", str(tmp_path / "absent")], capture_output=True,
                       timeout=T, env=clean_env())
    assert p.returncode == 3 and b"snapshot" in p.stderr, p.stderr
    (tmp_path / "badkeys").write_text("not-a-hash read *\n")
    p = subprocess.run(base + ["--keys", str(tmp_path / "badkeys")], capture_output=True,
                       timeout=T, env=clean_env())
    assert p.returncode == 2 and b"line 1" in p.stderr, p.stderr
    s = Server(tmp_path / "db", args=["--insecure-no-auth"])
    s.args = ["--insecure-no-auth"]
    with s:
        assert hpbg.HealthStub(s.channel()).Check(hpb.HealthCheckRequest(), timeout=T).status == \
            hpb.HealthCheckResponse.SERVING


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
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        ch = grpc.secure_channel(s.addr, creds, options=CHANNEL_OPTS)
        m = pbg.MemoryStub(ch)
        assert m.CreateMemory(pb.CreateMemoryRequest(name="tls"), timeout=T).name == "tls"
        plain = grpc.insecure_channel(s.addr)
        assert code_of(hpbg.HealthStub(plain).Check, hpb.HealthCheckRequest(), timeout=5) == \
            grpc.StatusCode.UNAVAILABLE
