#!/usr/bin/python3
"""An agent's memory over gRPC: append a conversation to a memory of `hsadb serve`, then ask
about it (streamed answer, then the evidence with provenance).

    hsadb --db ./hsadb-data serve --listen 127.0.0.1:50051 &
    /usr/bin/python3 examples/agent_client.py --addr 127.0.0.1:50051 [--key KEY]

Needs Debian's python3-grpcio and python3-protobuf (run it with /usr/bin/python3) and
protoc + grpc_python_plugin (protobuf-compiler, protobuf-compiler-grpc): the stubs are
generated from proto/ into a temporary directory at start.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]


def load_stubs():
    d = tempfile.mkdtemp(prefix="hsadb-stubs-")
    subprocess.run(["protoc", "-I", str(REPO / "proto"), f"--python_out={d}",
                    f"--grpc_python_out={d}",
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                    "hsadb/v1/memory.proto"], check=True)
    sys.path.insert(0, d)
    from hsadb.v1 import memory_pb2, memory_pb2_grpc
    return memory_pb2, memory_pb2_grpc


CONVERSATION = [
    ("user", "Hi! I'm planning a trip to Lisbon in May."),
    ("assistant", "Lovely. Do you have dates yet?"),
    ("user", "May 14 to May 19. My budget for the hotel is 120 euros a night."),
    ("assistant", "Noted: Lisbon, May 14-19, hotel up to 120 EUR per night."),
    ("user", "Also, I'm allergic to peanuts, please remember that for restaurants."),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--key", help="API key (sent as 'authorization: Bearer KEY')")
    ap.add_argument("--memory", default="agent-demo")
    ap.add_argument("--question", default="What is the user allergic to?")
    ap.add_argument("--tls-ca", help="PEM of the CA that signed the server certificate")
    a = ap.parse_args()
    pb, pbg = load_stubs()
    opts = [("grpc.max_receive_message_length", -1)]
    if a.tls_ca:
        ch = grpc.secure_channel(a.addr, grpc.ssl_channel_credentials(Path(a.tls_ca).read_bytes()), opts)
    else:
        ch = grpc.insecure_channel(a.addr, opts)
    md = (("authorization", f"Bearer {a.key}"),) if a.key else ()
    m = pbg.MemoryStub(ch)

    try:
        m.CreateMemory(pb.CreateMemoryRequest(name=a.memory), metadata=md, timeout=30)
        print(f"created memory {a.memory}")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise

    def turns():  # client stream: first message names the memory, then the bytes
        yield pb.AppendRequest(memory=a.memory)
        for role, text in CONVERSATION:
            yield pb.AppendRequest(data=f"<{role}> {text}\n".encode())

    r = m.Append(turns(), metadata=md, timeout=300)
    print(f"append {r.append_id}: {r.bytes} bytes, {r.chunks} chunks "
          f"(memory now {r.total_bytes} bytes, {r.total_chunks} chunks)")

    print(f"Q: {a.question}\nA: ", end="", flush=True)
    for msg in m.Query(pb.QueryRequest(memory=a.memory, question=a.question, max_tokens=64,
                                       evidence_k=3), metadata=md, timeout=300):
        if msg.WhichOneof("kind") == "piece":
            sys.stdout.write(msg.piece.decode("utf-8", "replace"))
            sys.stdout.flush()
        else:
            res = msg.result
            print(f"\n[{res.n_tokens} tokens, stop: {res.stop}]")
            for layer in res.layers:
                print(f"layer {layer.layer}:")
                for c in layer.chunks:
                    src = f"append {c.append_id} @ byte {c.byte_offset}" if c.persisted else "question"
                    print(f"  {c.score:.3f}  {src:24}  {c.text.decode('utf-8', 'replace')!r}")


if __name__ == "__main__":
    main()
