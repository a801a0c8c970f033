"""Helpers of the gRPC end-to-end tests: stubs generated at test time from proto/, and the
real `hsadb serve` binary started on 127.0.0.1 with an ephemeral port.

Stubs: protoc + grpc_python_plugin (Debian protobuf-compiler, protobuf-compiler-grpc) write
them into a temporary directory; nothing generated is committed. health.proto is compiled
from a copy at the top level (module health_pb2) so that its `grpc/` directory does not
shadow the grpc package.
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from conftest import BINARY, MODEL, REPO, clean_env

PLUGIN = "/usr/bin/grpc_python_plugin"
_GEN = None


def gen_stubs():
    """Generate the python stubs once per process; return (memory_pb2, memory_pb2_grpc,
    health_pb2, health_pb2_grpc)."""
    global _GEN
    if _GEN is None:
        d = Path(tempfile.mkdtemp(prefix="hsadb-stubs-"))
        src = d / "src"
        src.mkdir()
        shutil.copy(REPO / "proto" / "grpc" / "health" / "v1" / "health.proto", src / "health.proto")
        common = ["protoc", f"--python_out={d}", f"--grpc_python_out={d}",
                  f"--plugin=protoc-gen-grpc_python={PLUGIN}"]
        subprocess.run(common + ["-I", str(REPO / "proto"), "hsadb/v1/memory.proto"], check=True)
        subprocess.run(common + ["-I", str(src), "health.proto"], check=True)
        sys.path.insert(0, str(d))
        _GEN = d
    from hsadb.v1 import memory_pb2, memory_pb2_grpc
    import health_pb2
    import health_pb2_grpc
    return memory_pb2, memory_pb2_grpc, health_pb2, health_pb2_grpc


CHANNEL_OPTS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class Server:
    """One `hsadb serve` process on 127.0.0.1:<ephemeral>."""

    def __init__(self, db, args=(), model=MODEL, log=None, preexec_fn=None):
        self.db = Path(db)
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. a lower ulimit -n)
        self.args = list(map(str, args))
        self.model = model
        self.log_path = Path(log) if log else self.db.parent / f"serve-{os.getpid()}-{id(self)}.log"
        self.proc = None
        self.addr = None

    def start(self, timeout=30):
        self.log_file = open(self.log_path, "ab")
        cmd = [str(BINARY), "--db", str(self.db), "--model", str(self.model), "serve",
               "--listen", "127.0.0.1:0", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log_file,
                                     stdin=subprocess.DEVNULL, env=clean_env(),
                                     preexec_fn=self.preexec_fn)
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline and not line.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                ch = self.proc.stdout.read1(1) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(1)
                if not ch:
                    break
                line += ch
            elif self.proc.poll() is not None:
                break
        text = line.decode().strip()
        assert text.startswith("listening on 127.0.0.1:"), (text, self.log())
        self.addr = text.split()[-1]
        self.port = int(self.addr.rsplit(":", 1)[1])
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def channel(self, key=None):
        ch = grpc.insecure_channel(self.addr, options=CHANNEL_OPTS)
        grpc.channel_ready_future(ch).result(timeout=10)
        return ch

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server did not stop in time\n" + self.log())
        if self.proc:
            self.proc.stdout.close()
            self.log_file.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def bearer(key):
    return (("authorization", f"Bearer {key}"),)


def pieces(name, data, piece=1 << 20, pb=None):
    """AppendRequest stream: the first message names the memory."""
    pb = pb or gen_stubs()[0]
    yield pb.AppendRequest(memory=name)
    for i in range(0, len(data), piece):
        yield pb.AppendRequest(data=data[i:i + piece])
