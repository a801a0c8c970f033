#!/usr/bin/python3
"""Bounded loopback load on `hsadb serve`: N client threads, each on its own memory,
alternate an Append of APPEND_BYTES and a Query of MAX_TOKENS for SECONDS seconds, all on
127.0.0.1. Prints throughput and p50/p99 latency per operation as a table.

    /usr/bin/python3 bench/bench_grpc.py [--clients 4] [--seconds 10] [--model tests/data/tiny]
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "py"))
os.environ.setdefault("HSADB", str(REPO / "build" / "hsadb"))
from grpc_util import Server, gen_stubs, pieces  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--append-bytes", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--model", default=str(REPO / "tests" / "data" / "tiny"))
    a = ap.parse_args()
    pb, pbg, _, _ = gen_stubs()
    tmp = Path(tempfile.mkdtemp(prefix="hsadb-bench-"))
    srv = Server(tmp / "db", args=["--quiet", "--nosync"], model=a.model).start()
    m = pbg.MemoryStub(srv.channel())
    lat = {"append": [], "query": []}
    nbytes = [0]
    lock = threading.Lock()
    for i in range(a.clients):
        m.CreateMemory(pb.CreateMemoryRequest(name=f"c{i}"), timeout=30)
    stop = time.time() + a.seconds

    def client(i):
        data = os.urandom(a.append_bytes)
        while time.time() < stop:
            t = time.perf_counter()
            m.Append(pieces(f"c{i}", data, 65536, pb), timeout=60)
            t1 = time.perf_counter()
            list(m.Query(pb.QueryRequest(memory=f"c{i}", question="what happened?",
                                         max_tokens=a.max_tokens), timeout=60))
            t2 = time.perf_counter()
            with lock:
                lat["append"].append(t1 - t)
                lat["query"].append(t2 - t1)
                nbytes[0] += len(data)

    t0 = time.time()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    wall = time.time() - t0
    srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"clients={a.clients} seconds={wall:.1f} append_bytes={a.append_bytes} "
          f"max_tokens={a.max_tokens} model={a.model}")
    print(f"{'op':8} {'count':>7} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for op, xs in lat.items():
        print(f"{op:8} {len(xs):7d} {len(xs) / wall:8.1f} {pct(xs, 50) * 1e3:8.1f} "
              f"{pct(xs, 99) * 1e3:8.1f}")
    print(f"append throughput: {nbytes[0] / wall / 1024:.1f} KiB/s")


if __name__ == "__main__":
    main()
