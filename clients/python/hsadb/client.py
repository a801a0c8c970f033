"""The hsadb gRPC client (service hsadb.v1.Memory, docs/rpc.md).

    from hsadb import Client
    with Client("127.0.0.1:50051", key="...") as db:
        db.create("notes")
        db.append("notes", "The pass key is 71432.\\n")
        answer = db.query("notes", "What is the pass key?")
        print(answer.text, answer.layers[0].chunks[0].append_id)

Calls go through grpcio's generic stubs (channel.unary_unary, ...), built from the service
descriptor of the generated message module, so no gRPC code generator is needed. Every
failed call raises hsadb.HsadbError (see errors.py).
"""
import codecs
import io
import os
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Union

import grpc

from ._gen import health_pb2 as hpb
from ._gen import memory_pb2 as pb
from .errors import from_rpc_error
from .types import (Answer, AppendResult, MemoryInfo, RestoreResult, SearchResult,
                    SnapshotResult)

SERVICE = "hsadb.v1.Memory"
PIECE = 1 << 20                 # bytes per AppendRequest (the server accepts up to 4 MiB)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 8 << 20)]

Data = Union[bytes, bytearray, memoryview, str, Path, io.IOBase, Iterable]


def _credentials(tls):
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if isinstance(tls, (bytes, bytearray)):
        return grpc.ssl_channel_credentials(root_certificates=bytes(tls))
    if isinstance(tls, (str, os.PathLike)):
        return grpc.ssl_channel_credentials(root_certificates=Path(tls).read_bytes())
    raise TypeError("tls must be None, True, PEM bytes of the CA, a path to it, or "
                    "grpc.ChannelCredentials")


def _pieces(data, piece) -> Iterator[bytes]:
    """The bytes of `data` in pieces of at most `piece` bytes."""
    def split(b):
        for i in range(0, len(b), piece):
            yield bytes(b[i:i + piece])

    if isinstance(data, str):
        yield from split(data.encode("utf-8"))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        yield from split(memoryview(data).cast("B"))
    elif isinstance(data, Path):
        with open(data, "rb") as f:
            yield from _pieces(f, piece)
    elif hasattr(data, "read"):
        while True:
            b = data.read(piece)
            if not b:
                break
            yield from split(b.encode("utf-8") if isinstance(b, str) else b)
    elif hasattr(data, "__iter__"):
        for x in data:
            if not isinstance(x, (str, bytes, bytearray, memoryview)):
                raise TypeError(f"append: an iterator must yield bytes or str, got "
                                f"{type(x).__name__}")
            yield from _pieces(x, piece)
    else:
        raise TypeError(f"append: data must be bytes, str, a file, a Path or an iterator of "
                        f"bytes/str, got {type(data).__name__}")


def _request(cls, fields, **known):
    """cls(**known, **fields); an unknown field is a TypeError naming it."""
    for name in fields:
        if name not in cls.DESCRIPTOR.fields_by_name:
            raise TypeError(f"{cls.DESCRIPTOR.name} has no field '{name}' (this client's "
                            f"proto: regenerate with clients/python/gen.sh if the server's "
                            f"is newer)")
    return cls(**known, **fields)


class QueryStream:
    """A query in progress: iterate for the answer's pieces (bytes) as they are generated;
    afterwards `result` holds the Answer. cancel() stops generation on the server."""

    def __init__(self, call):
        self._call = call
        self.result: Optional[Answer] = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for msg in self._call:
                kind = msg.WhichOneof("kind")
                if kind == "piece":
                    yield bytes(msg.piece)
                elif kind == "result":
                    self.result = Answer.from_pb(msg.result)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def text(self) -> Iterator[str]:
        """The pieces decoded as UTF-8 (a character split between pieces is kept whole;
        invalid bytes become U+FFFD)."""
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        for piece in self:
            t = dec.decode(piece)
            if t:
                yield t
        t = dec.decode(b"", final=True)
        if t:
            yield t

    def cancel(self):
        self._call.cancel()


class Client:
    """A connection to `hsadb serve`.

    address: "HOST:PORT". key: the API key (sent as `authorization: Bearer KEY`).
    tls: None (plain), True (system CA roots), the CA's PEM as bytes or a path to it, or
    grpc.ChannelCredentials. timeout: default deadline in seconds of every call (None: none).
    """

    def __init__(self, address: str, key: Optional[str] = None, tls=None, *,
                 timeout: Optional[float] = None, options=None):
        opts = list(CHANNEL_OPTIONS) + list(options or [])
        creds = _credentials(tls)
        self._channel = (grpc.secure_channel(address, creds, opts) if creds
                         else grpc.insecure_channel(address, opts))
        self._metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self.timeout = timeout
        self._rpc = {}
        for m in pb.DESCRIPTOR.services_by_name["Memory"].methods:
            req, resp = getattr(pb, m.input_type.name), getattr(pb, m.output_type.name)
            kind = ("stream_" if m.client_streaming else "unary_") + \
                   ("stream" if m.server_streaming else "unary")
            self._rpc[m.name] = getattr(self._channel, kind)(
                f"/{SERVICE}/{m.name}", request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString)

        self._health = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=hpb.HealthCheckRequest.SerializeToString,
            response_deserializer=hpb.HealthCheckResponse.FromString)

    # ---- plumbing ----

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout):
        try:
            return self._rpc[method](request, metadata=self._metadata,
                                     timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    # ---- health ----

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the channel is connected (UnavailableError after timeout seconds)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            from .errors import UnavailableError
            raise UnavailableError(grpc.StatusCode.UNAVAILABLE,
                                   f"not connected after {timeout} s") from None

    def health(self, service: str = "", *, timeout=None) -> str:
        """grpc.health.v1.Health/Check (no key needed): "SERVING", or "NOT_SERVING", ...;
        NotFoundError for an unknown service name. "" = the server; "hsadb.v1.Memory"."""
        r = self._call_health(hpb.HealthCheckRequest(service=service), timeout)
        return hpb.HealthCheckResponse.ServingStatus.Name(r.status)

    def _call_health(self, request, timeout):
        try:
            return self._health(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    # ---- memories ----

    def create(self, name: str, *, timeout=None) -> MemoryInfo:
        """Create an empty memory bound to the server's model (write grant)."""
        return MemoryInfo.from_pb(self._call("CreateMemory", pb.CreateMemoryRequest(name=name), timeout))

    def get(self, name: str, *, timeout=None) -> MemoryInfo:
        return MemoryInfo.from_pb(self._call("GetMemory", pb.GetMemoryRequest(name=name), timeout))

    def list(self, *, page_size: int = 0, start_after: str = "", timeout=None) -> List[MemoryInfo]:
        """Every memory the key may read, sorted by name (all pages, page_size per call)."""
        out = []
        while True:
            r = self._call("ListMemories", pb.ListMemoriesRequest(
                page_size=page_size, start_after=start_after), timeout)
            out += [MemoryInfo.from_pb(m) for m in r.memories]
            if not r.next_start_after:
                return out
            start_after = r.next_start_after

    def delete(self, name: str, *, timeout=None) -> None:
        """Delete a memory and all its records (admin grant)."""
        self._call("DeleteMemory", pb.DeleteMemoryRequest(name=name), timeout)

    # ---- append ----

    def append(self, name: str, data: Data, *, piece_size: int = PIECE, timeout=None) -> AppendResult:
        """Append bytes to a memory, streamed in pieces of piece_size bytes: data is bytes,
        str (UTF-8), a file object opened in binary or text mode, a pathlib.Path (read as a
        file), or an iterator of bytes/str. Committed when all of it is sent; if the call
        fails, the server rolls back to its last committed batch (docs/rpc.md)."""
        if not 1 <= piece_size <= 4 << 20:
            raise ValueError("piece_size must be in 1..4 MiB")
        if not isinstance(data, (bytes, bytearray, memoryview, str, Path)) and \
                not hasattr(data, "read") and not hasattr(data, "__iter__"):
            raise TypeError(f"append: data must be bytes, str, a file, a Path or an iterator "
                            f"of bytes/str, got {type(data).__name__}")
        failure = []

        def requests():
            yield pb.AppendRequest(memory=name)
            try:
                for b in _pieces(data, piece_size):
                    yield pb.AppendRequest(data=b)
            except Exception as e:  # noqa: BLE001 - re-raised below; the call is cancelled
                failure.append(e)
                raise

        try:
            r = self._call("Append", requests(), timeout)
        except Exception:
            if failure:   # reading the input failed: the server rolled the append back
                raise failure[0] from None
            raise
        return AppendResult.from_pb(r)

    # ---- query and search ----

    def query_stream(self, name: str, question: str, *, max_tokens: int = 0,
                     temperature: float = 0.0, top_p: float = 0.0, seed: int = 0,
                     evidence_k: int = 0, timeout=None, **fields) -> QueryStream:
        """Start a query; iterate the returned QueryStream for the pieces of the answer."""
        req = _request(pb.QueryRequest, fields, memory=name, question=question,
                       max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                       evidence_k=evidence_k)
        return QueryStream(self._call("Query", req, timeout))

    def query(self, name: str, question: str, **kw) -> Answer:
        """Ask a question: the whole answer and its evidence (see query_stream's arguments)."""
        s = self.query_stream(name, question, **kw)
        for _ in s:
            pass
        if s.result is None:
            from .errors import HsadbError
            raise HsadbError(grpc.StatusCode.INTERNAL, "the query stream ended without a result")
        return s.result

    _MODES = {"hybrid": 0, "lexical": 1, "model": 2}

    def search(self, name: str, question: str, k: int = 0, *, mode: str = "hybrid", timeout=None,
               **fields) -> SearchResult:
        """The k passages most relevant to the question (0 = 8), by mode "hybrid" (default),
        "lexical" or "model". Further keyword arguments are fields of SearchRequest (filters,
        passage_bytes, context_bytes, bm25_k1/bm25_b; docs/rpc.md)."""
        if mode not in self._MODES:
            raise ValueError("mode must be one of %s, not %r" % (", ".join(self._MODES), mode))
        req = _request(pb.SearchRequest, fields, memory=name, question=question, k=k, mode=self._MODES[mode])
        return SearchResult.from_pb(self._call("Search", req, timeout))

    # ---- snapshot and restore ----

    def snapshot(self, name: str, memory: Optional[str] = None, *, timeout=None) -> SnapshotResult:
        """Write a consistent copy of one memory (or of the whole database) into
        <snapshot-dir>/<name> on the server (admin grant)."""
        return SnapshotResult.from_pb(self._call(
            "Snapshot", pb.SnapshotRequest(name=name, memory=memory or ""), timeout))

    def restore(self, snapshot: str, dest: str, *, timeout=None) -> RestoreResult:
        """Restore <snapshot-dir>/<snapshot> into the new database directory
        <snapshot-dir>/<dest> on the server (admin grant on "*")."""
        return RestoreResult.from_pb(self._call(
            "Restore", pb.RestoreRequest(snapshot=snapshot, dest=dest), timeout))
