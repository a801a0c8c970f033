#!/usr/bin/python3
"""An agent's memory over gRPC: append a conversation to a memory of `hsadb serve`, then ask
about it (streamed answer, then the evidence with provenance).

    hsadb --db ./hsadb-data serve --listen 127.0.0.1:50051 &
    /usr/bin/python3 examples/agent_client.py --addr 127.0.0.1:50051 [--key KEY]

Uses the client package clients/python (import name hsadb): install it with
`pip install ./clients/python` (clients/python/README.md), or run this script from the
repository, which finds the package there. Needs Debian's python3-grpcio and python3-protobuf.
"""
import argparse
import sys
from pathlib import Path

try:
    import hsadb
except ImportError:   # not installed: use the package in this repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))
    import hsadb

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

    with hsadb.Client(a.addr, key=a.key, tls=a.tls_ca and Path(a.tls_ca), timeout=300) as db:
        try:
            db.create(a.memory)
            print(f"created memory {a.memory}")
        except hsadb.AlreadyExistsError:
            pass

        # streamed: each turn is one piece of the Append call
        r = db.append(a.memory, (f"<{role}> {text}\n" for role, text in CONVERSATION))
        print(f"append {r.append_id}: {r.bytes} bytes, {r.chunks} chunks "
              f"(memory now {r.total_bytes} bytes, {r.total_chunks} chunks)")

        print(f"Q: {a.question}\nA: ", end="", flush=True)
        q = db.query_stream(a.memory, a.question, max_tokens=64, evidence_k=3)
        for piece in q:
            sys.stdout.write(piece.decode("utf-8", "replace"))
            sys.stdout.flush()
        res = q.result
        print(f"\n[{res.n_tokens} tokens, stop: {res.stop}]")
        for layer in res.layers:
            print(f"layer {layer.layer}:")
            for c in layer.chunks:
                src = f"append {c.append_id} @ byte {c.byte_offset}" if c.persisted else "question"
                print(f"  {c.score:.3f}  {src:24}  {c.text!r}")


if __name__ == "__main__":
    try:
        main()
    except hsadb.HsadbError as e:
        sys.exit(f"agent_client: {e}")
