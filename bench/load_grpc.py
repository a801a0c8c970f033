#!/usr/bin/python3
"""Bounded loopback load test of `hsadb serve`: CLIENTS client threads, each on its own
connection, call a mix of methods for SECONDS seconds on 127.0.0.1 (health check, GetMemory,
ListMemories, Search, a short Query, a 1 KiB Append; memories shared by 8 clients each).
Prints per method the calls, errors, p50 and p99 latency, and the server's resident memory
(at start, peak, end, sampled every 0.25 s). Exit status 1 if any call failed.

    /usr/bin/python3 bench/load_grpc.py [--clients 64] [--seconds 20] [--workers 16]
                                        [--model tests/data/tiny]

Runs in about SECONDS + 10 s; the server is the real binary (HSADB, default build/hsadb)
with --nosync, on a temporary database removed at the end.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "py"))
os.environ.setdefault("HSADB", str(REPO / "build" / "hsadb"))
import grpc  # noqa: E402
from grpc_util import CHANNEL_OPTS, Server, gen_stubs, pieces  # noqa: E402

# method -> relative weight in the mix
MIX = {"Check": 2, "GetMemory": 3, "ListMemories": 1, "Search": 2, "Query": 1, "Append": 1}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--memories", type=int, default=8)
    ap.add_argument("--model", default=str(REPO / "tests" / "data" / "tiny"))
    a = ap.parse_args()
    pb, pbg, hpb, hpbg = gen_stubs()
    tmp = Path(tempfile.mkdtemp(prefix="hsadb-load-"))
    srv = Server(tmp / "db", args=["--quiet", "--nosync", "--workers", a.workers],
                 model=a.model).start()
    try:
        setup = pbg.MemoryStub(srv.channel())
        names = [f"m{i}" for i in range(a.memories)]
        for i, n in enumerate(names):
            setup.CreateMemory(pb.CreateMemoryRequest(name=n), timeout=60)
            setup.Append(pieces(n, random.Random(i).randbytes(8192), pb=pb), timeout=120)
        lat = {k: [] for k in MIX}
        errs = {k: 0 for k in MIX}
        first_err = {}
        lock = threading.Lock()
        rss = [rss_kib(srv.proc.pid)]
        start = time.time()
        stop = start + a.seconds
        ready = threading.Barrier(a.clients + 1)

        def client(i):
            rnd = random.Random(1000 + i)
            ch = grpc.insecure_channel(srv.addr, options=CHANNEL_OPTS +
                                       [("grpc.use_local_subchannel_pool", 1)])
            m, h = pbg.MemoryStub(ch), hpbg.HealthStub(ch)
            name = names[i % len(names)]
            calls = {
                "Check": lambda: h.Check(hpb.HealthCheckRequest(), timeout=30),
                "GetMemory": lambda: m.GetMemory(pb.GetMemoryRequest(name=name), timeout=30),
                "ListMemories": lambda: m.ListMemories(pb.ListMemoriesRequest(), timeout=30),
                "Search": lambda: m.Search(pb.SearchRequest(memory=name, question="what was "
                                                             "said about the plan?", k=4),
                                           timeout=30),
                "Query": lambda: list(m.Query(pb.QueryRequest(memory=name, question="what "
                                                              "next?", max_tokens=8),
                                              timeout=30)),
                "Append": lambda: m.Append(pieces(name, rnd.randbytes(1024), pb=pb),
                                           timeout=30),
            }
            kinds = [k for k, w in MIX.items() for _ in range(w)]
            grpc.channel_ready_future(ch).result(timeout=30)
            ready.wait()
            while time.time() < stop:
                k = rnd.choice(kinds)
                t = time.perf_counter()
                try:
                    calls[k]()
                    ok = True
                except grpc.RpcError as e:
                    ok = False
                    with lock:
                        first_err.setdefault(k, f"{e.code().name}: {e.details()}")
                dt = time.perf_counter() - t
                with lock:
                    if ok:
                        lat[k].append(dt)
                    else:
                        errs[k] += 1
            ch.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(a.clients)]
        for t in threads:
            t.start()
        ready.wait(timeout=120)
        start = time.time()
        stop = start + a.seconds
        while any(t.is_alive() for t in threads) and time.time() < stop + 60:
            rss.append(rss_kib(srv.proc.pid))
            time.sleep(0.25)
        for t in threads:
            t.join(timeout=1)
        elapsed = time.time() - start
        rss.append(rss_kib(srv.proc.pid))
    finally:
        rc = srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{a.clients} clients, {elapsed:.1f} s, --workers {a.workers}, model {a.model}; "
          f"server exit {rc}")
    print(f"{'method':<13}{'calls':>7}{'errors':>8}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}")
    total_err = 0
    for k in MIX:
        xs = lat[k]
        total_err += errs[k]
        print(f"{k:<13}{len(xs):>7}{errs[k]:>8}{len(xs) / elapsed:>8.1f}"
              f"{pct(xs, 50) * 1e3:>9.1f}{pct(xs, 99) * 1e3:>9.1f}")
    print(f"server RSS: start {rss[0] / 1024:.1f} MiB, peak {max(rss) / 1024:.1f} MiB, "
          f"end {rss[-1] / 1024:.1f} MiB")
    for k, e in first_err.items():
        print(f"first {k} error: {e}")
    return 1 if total_err or rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
