"""Denial-of-service, limit and shutdown cases of `hsadb serve` (issue 35, docs/rpc.md
"Limits"): the real binary on loopback, Debian's grpcio as client, raw sockets for floods.
Every loop is bounded and every server is stopped by the test."""
import os
import resource
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

from conftest import BINARY, MODEL, TIMEOUT, clean_env, rand_bytes
from grpc_util import CHANNEL_OPTS, Server, bearer, gen_stubs, pieces

pb, pbg, hpb, hpbg = gen_stubs()
SLOW = max(1.0, TIMEOUT / 150)  # HSADB_TEST_TIMEOUT above 150 (sanitizer builds) stretches
T = 30 * SLOW                   # the latency bounds below; seconds per RPC by default


def code_of(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        r = fn(*a, **kw)
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, pb.QueryResponse)):
            list(r)
    return e.value.code()


def flood(port, n):
    """Open up to n raw TCP connections that never send a byte; return the sockets."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            break
        socks.append(s)
    return socks


def low_nofile(n):
    def f():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return f


def fresh_call(s, timeout=10):
    """A new connection and a real call on it (health, then a Memory call). A local
    subchannel pool: grpcio would otherwise reuse another channel's connection."""
    ch = grpc.insecure_channel(s.addr, options=CHANNEL_OPTS + [("grpc.use_local_subchannel_pool", 1)])
    try:
        grpc.channel_ready_future(ch).result(timeout=timeout)
        assert hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest(), timeout=timeout).status == \
            hpb.HealthCheckResponse.SERVING
        pbg.MemoryStub(ch).ListMemories(pb.ListMemoriesRequest(), timeout=timeout)
    finally:
        ch.close()


# ---- 1. connection floods ----------------------------------------------------------------

def test_descriptor_exhaustion_then_server_accepts_again(tmp_path):
    """More raw connections than the server has descriptors (ulimit -n 128 for the server):
    a tenant already connected keeps working during the flood, and once the flood closes a
    new connection gets served. (gRPC 1.51's own listener stopped accepting for good.)"""
    with Server(tmp_path / "db", preexec_fn=low_nofile(128)) as s:
        tenant = s.channel()
        m = pbg.MemoryStub(tenant)
        m.CreateMemory(pb.CreateMemoryRequest(name="a"), timeout=T)
        socks = flood(s.port, 1200)
        try:
            assert len(socks) > 128
            time.sleep(3)  # the server has tried to accept them all
            t0 = time.time()
            m.GetMemory(pb.GetMemoryRequest(name="a"), timeout=5 * SLOW)
            m.Append(pieces("a", b"during the flood"), timeout=5 * SLOW)
            assert time.time() - t0 < 5 * SLOW
        finally:
            for x in socks:
                x.close()
        fresh_call(s)
        # twice: the server recovers every time, not once
        socks = flood(s.port, 1200)
        time.sleep(2)
        for x in socks:
            x.close()
        fresh_call(s)


def test_connection_cap_and_silent_connections_are_dropped(tmp_path):
    """--max-connections caps open connections; silent ones are closed after
    --handshake-timeout, so a new tenant gets in within its deadline while the flood's
    sockets are still held open by the attacker."""
    with Server(tmp_path / "db", args=["--max-connections", "20",
                                       "--handshake-timeout", "1"]) as s:
        tenant = pbg.MemoryStub(s.channel())
        socks = flood(s.port, 60)
        try:
            t0 = time.time()
            tenant.ListMemories(pb.ListMemoriesRequest(), timeout=5 * SLOW)
            assert time.time() - t0 < 5 * SLOW
            fresh_call(s, timeout=10)
            # the server closed every silent socket: each reads EOF (or a reset)
            time.sleep(1.5)
            closed = 0
            for x in socks:
                x.settimeout(0.5)
                try:
                    closed += x.recv(1) == b""
                except (ConnectionResetError, socket.timeout):
                    closed += 1
            assert closed == len(socks)
        finally:
            for x in socks:
                x.close()


def test_unix_socket_address_is_printed(tmp_path):
    path = tmp_path / "hsadb.sock"
    p = subprocess.Popen([str(BINARY), "--db", str(tmp_path / "db"), "--model", str(MODEL),
                          "serve", "--listen", f"unix:{path}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=clean_env())
    try:
        line = p.stdout.readline().decode().strip()
        assert line == f"listening on unix:{path}", line
        ch = grpc.insecure_channel(f"unix:{path}")
        grpc.channel_ready_future(ch).result(timeout=10)
        assert hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest(), timeout=10).status == \
            hpb.HealthCheckResponse.SERVING
        ch.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        p.stdout.close()
        p.stderr.close()
    assert not path.exists()


# ---- 2. idle streams of one valid key ----------------------------------------------------

def hash_key(k):
    p = subprocess.run([str(BINARY), "serve", "--hash-key", k], capture_output=True, check=True,
                       env=clean_env())
    return p.stdout.decode().strip()


def keyed_server(tmp_path, args):
    lines = [f"{hash_key('mallory')} read *", f"{hash_key('alice')} write *"]
    (tmp_path / "keys").write_text("\n".join(lines) + "\n")
    return Server(tmp_path / "db", args=["--keys", tmp_path / "keys", *args])


def idle_appends(m, key, n, release, timeout=T):
    """n Append streams that send no message until `release` is set."""
    def silent():
        release.wait(20)
        return
        yield  # a generator that yields nothing
    return [m.Append.future(silent(), metadata=bearer(key), timeout=timeout) for _ in range(n)]


def test_idle_streams_of_one_key_do_not_stall_other_tenants(tmp_path):
    """A read-only key opens more silent Append streams than there are workers: the ones
    over its limit get RESOURCE_EXHAUSTED at once, the others DEADLINE_EXCEEDED after the
    first-message timeout, and another key's calls finish within their deadline meanwhile."""
    with keyed_server(tmp_path, ["--workers", "4", "--first-message-timeout", "3"]) as s:
        m = pbg.MemoryStub(s.channel())
        m.CreateMemory(pb.CreateMemoryRequest(name="a"), metadata=bearer("alice"), timeout=T)
        release = threading.Event()
        t0 = time.time()
        futs = idle_appends(m, "mallory", 8, release)
        try:
            time.sleep(0.5)
            for _ in range(3):  # well-behaved tenant: every call within its 2 s deadline
                m.GetMemory(pb.GetMemoryRequest(name="a"), metadata=bearer("alice"), timeout=2 * SLOW)
                m.Append(pieces("a", b"x" * 300), metadata=bearer("alice"), timeout=2 * SLOW)
                m.Search(pb.SearchRequest(memory="a", question="x", k=1),
                         metadata=bearer("alice"), timeout=2 * SLOW)
            codes = []
            for f in futs:
                with pytest.raises(grpc.RpcError) as e:
                    f.result(timeout=15)
                codes.append(e.value.code())
        finally:
            release.set()
        # default limit: workers / 2 = 2 streams of one key
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 6, codes
        assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) == 2, codes
        assert time.time() - t0 < 10 * SLOW
        assert "first-message-timeout" in s.log()


def test_first_message_timeout_frees_a_full_pool(tmp_path):
    """With the per-key limit as large as the pool, silent streams hold every worker until
    the first-message timeout; then other calls run."""
    with keyed_server(tmp_path, ["--workers", "2", "--max-streams-per-key", "2",
                                 "--first-message-timeout", "1.5"]) as s:
        m = pbg.MemoryStub(s.channel())
        release = threading.Event()
        futs = idle_appends(m, "mallory", 2, release)
        try:
            time.sleep(0.3)
            t0 = time.time()
            m.ListMemories(pb.ListMemoriesRequest(), metadata=bearer("alice"), timeout=6 * SLOW)
            assert time.time() - t0 < 4 * SLOW
            for f in futs:
                with pytest.raises(grpc.RpcError) as e:
                    f.result(timeout=10)
                assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            release.set()


# ---- 3. deadlines, cancellation and SIGTERM during long work -------------------------------

BIG = 4 * 1024 * 1024 - 1024  # one Append message just under the 4 MiB limit


def test_big_append_past_its_deadline_stops_and_frees_the_memory(tmp_path):
    """One ~4 MiB Append message with a 1 s deadline: DEADLINE_EXCEEDED, and within ~2 s the
    server has stopped working on it (the next Append on the same memory, which waits for
    the memory's append lock, succeeds). What stays is the committed prefix: a multiple of
    256 bytes, shorter than the message."""
    with Server(tmp_path / "db") as s:
        m = pbg.MemoryStub(s.channel())
        m.CreateMemory(pb.CreateMemoryRequest(name="m"), timeout=T)
        data = rand_bytes(BIG, 35)
        t0 = time.time()
        assert code_of(m.Append, iter([pb.AppendRequest(memory="m", data=data)]), timeout=1) == \
            grpc.StatusCode.DEADLINE_EXCEEDED
        r = m.Append(pieces("m", b"after"), timeout=3 * SLOW)
        assert time.time() - t0 < 3.5 * SLOW, time.time() - t0
        kept = r.total_bytes - 5
        assert kept % 256 == 0 and kept < BIG, kept
        # the server says what it kept
        assert f"kept={kept}" in s.log(), s.log()


def test_sigterm_with_a_long_append_in_flight_stops_within_the_grace(tmp_path):
    s = Server(tmp_path / "db", args=["--grace", "1"]).start()
    try:
        m = pbg.MemoryStub(s.channel())
        m.CreateMemory(pb.CreateMemoryRequest(name="m"), timeout=T)
        fut = m.Append.future(iter([pb.AppendRequest(memory="m", data=rand_bytes(BIG, 7))]),
                              timeout=60)
        time.sleep(1)
        assert not fut.done()
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(timeout=15)
        took = time.time() - t0
    finally:
        s.stop()
    assert rc == 0, s.log()
    assert took < 1 + 1.5 * SLOW, took
    with pytest.raises(grpc.RpcError):
        fut.result(timeout=5)


def test_long_question_is_bounded_by_its_deadline(tmp_path):
    """A 64 KiB question (the default limit) to Search and Query with a 1 s deadline: either
    an answer or DEADLINE_EXCEEDED, and the only worker is free again at once."""
    with Server(tmp_path / "db", args=["--workers", "1"]) as s:
        m = pbg.MemoryStub(s.channel())
        m.CreateMemory(pb.CreateMemoryRequest(name="m"), timeout=T)
        m.Append(pieces("m", rand_bytes(4096, 1)), timeout=T)
        q = "why " * (65536 // 4)
        for call in (lambda: m.Search(pb.SearchRequest(memory="m", question=q, k=2), timeout=1),
                     lambda: list(m.Query(pb.QueryRequest(memory="m", question=q, max_tokens=4),
                                          timeout=1))):
            try:
                call()
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
            t0 = time.time()
            m.GetMemory(pb.GetMemoryRequest(name="m"), timeout=1.5 * SLOW)
            assert time.time() - t0 < 1.5 * SLOW
        assert code_of(m.Search, pb.SearchRequest(memory="m", question=q + "x", k=2),
                       timeout=T) == grpc.StatusCode.INVALID_ARGUMENT


def test_message_and_question_limits_are_options(tmp_path):
    with Server(tmp_path / "db", args=["--max-message-bytes", "65536",
                                       "--max-question-bytes", "100"]) as s:
        m = pbg.MemoryStub(s.channel())
        m.CreateMemory(pb.CreateMemoryRequest(name="m"), timeout=T)
        assert code_of(m.Append, iter([pb.AppendRequest(memory="m", data=b"x" * 70000)]),
                       timeout=T) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert m.Append(pieces("m", b"x" * 60000), timeout=T).total_bytes == 60000
        assert code_of(m.Search, pb.SearchRequest(memory="m", question="q" * 101, k=1),
                       timeout=T) == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as e:
            list(m.Query(pb.QueryRequest(memory="m", question="q" * 101), timeout=T))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "--max-question-bytes" in e.value.details()
        assert m.Search(pb.SearchRequest(memory="m", question="q" * 100, k=1), timeout=T).hits


# ---- 4. SIGTERM right after start-up -----------------------------------------------------

def handles_sigterm(pid):
    """True once serve has installed its SIGTERM handler (SigCgt). (SigBlk would not do:
    glibc blocks every signal for a moment in each pthread_create.)"""
    bit = 1 << (signal.SIGTERM - 1)
    try:
        # after exec only: python blocks every signal in the child between fork and exec
        if os.readlink(f"/proc/{pid}/exe") != str(BINARY.resolve()):
            return False
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("SigCgt:") and int(line.split()[1], 16) & bit
                       for line in f)
    except OSError:
        return False


@pytest.mark.parametrize("delay", [0, 0.005, 0.02, 0.05, 0.1])
def test_sigterm_right_after_start_up_stops_cleanly(tmp_path, delay):
    """SIGTERM as soon as serve has taken charge of the signal, at several points of the
    start-up (model load, database open, gRPC start): exit 0, not death by the signal
    (which happened when a thread that did not block it, e.g. OpenBLAS's pool started
    before main(), took it)."""
    p = subprocess.Popen([str(BINARY), "--db", str(tmp_path / "db"), "--model", str(MODEL),
                          "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=clean_env())
    try:
        t_end = time.time() + 10
        while not handles_sigterm(p.pid) and p.poll() is None and time.time() < t_end:
            pass
        assert handles_sigterm(p.pid)
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
        err = p.stderr.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert rc == 0, (rc, err)


# ---- 5. minor --------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [None, b"\0" * 100, b"x" * (1 << 20) + b"\n"],
                         ids=["dev-zero", "nul-bytes", "over-1MiB"])
def test_keys_file_is_read_bounded(tmp_path, content):
    """--keys /dev/zero (and a binary or oversized file) stops start-up with a clear error
    instead of reading forever."""
    path = "/dev/zero"
    if content is not None:
        path = tmp_path / "keys"
        path.write_bytes(content)
    p = subprocess.run([str(BINARY), "--db", str(tmp_path / "db"), "--model", str(MODEL),
                        "serve", "--listen", "127.0.0.1:0", "--keys", str(path)],
                       capture_output=True, timeout=20, env=clean_env())
    assert p.returncode == 2, p
    err = p.stderr.decode()
    assert "not a keys file" in err and str(path) in err, err
