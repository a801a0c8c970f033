"""Typed results of the hsadb client: plain dataclasses built from the service's messages.

Every result has `extra`: the message's set fields that this version of the client does not
name (a newer server's or proto's additions, e.g. a search mode or per-hit scores), as a
dict of plain Python values, so they pass through instead of being dropped.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List

from google.protobuf.json_format import MessageToDict


def _extra(msg, known) -> Dict[str, Any]:
    """The set fields of msg that are not in `known`, as plain values."""
    out = {}
    for fd, value in msg.ListFields():
        if fd.name in known:
            continue
        if fd.message_type is not None:
            if fd.label == fd.LABEL_REPEATED:
                value = [MessageToDict(v, preserving_proto_field_name=True) for v in value]
            else:
                value = MessageToDict(value, preserving_proto_field_name=True)
        elif fd.label == fd.LABEL_REPEATED:
            value = list(value)
        out[fd.name] = value
    return out


@dataclass
class MemoryInfo:
    """One memory's statistics (GetMemory, ListMemories, CreateMemory)."""
    name: str
    fingerprint: str          # hex SHA-256 of the model the memory is bound to
    n_chunks: int
    n_bytes: int
    n_appends: int
    tail_bytes: int
    store_bytes: int
    created: int              # unix time
    updated: int              # unix time of the last committed append
    kv_dtype: str             # "bf16" or "f32"
    extra: Dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("name", "fingerprint", "n_chunks", "n_bytes", "n_appends", "tail_bytes",
               "store_bytes", "created", "updated", "kv_dtype")

    @classmethod
    def from_pb(cls, m) -> "MemoryInfo":
        return cls(*(getattr(m, f) for f in cls._FIELDS), extra=_extra(m, cls._FIELDS))


@dataclass
class AppendResult:
    append_id: int            # id of this append within the memory (1, 2, ...)
    bytes: int                # bytes accepted by this append
    chunks: int               # chunk records written by this append
    total_chunks: int
    total_bytes: int
    seconds: float
    extra: Dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("append_id", "bytes", "chunks", "total_chunks", "total_bytes", "seconds")

    @classmethod
    def from_pb(cls, m) -> "AppendResult":
        return cls(*(getattr(m, f) for f in cls._FIELDS), extra=_extra(m, cls._FIELDS))


@dataclass
class Chunk:
    """A retrieved chunk with its provenance: bytes [chunk*64, chunk*64+64) of the stream."""
    chunk: int
    score: float              # retrieval weight (query evidence) or relevance (search)
    persisted: bool           # False: the chunk completed by the question itself, not stored
    append_id: int            # the append that wrote its first byte (0 if not persisted)
    byte_offset: int
    time: int                 # unix time of that append
    data: bytes               # the chunk's bytes
    extra: Dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("chunk", "score", "persisted", "append_id", "byte_offset", "time", "text")

    @property
    def text(self) -> str:
        """The bytes as text (invalid UTF-8, e.g. a character cut at a chunk edge, as U+FFFD)."""
        return self.data.decode("utf-8", "replace")

    @classmethod
    def from_pb(cls, m) -> "Chunk":
        return cls(m.chunk, m.score, m.persisted, m.append_id, m.byte_offset, m.time,
                   bytes(m.text), extra=_extra(m, cls._FIELDS))


@dataclass
class LayerEvidence:
    layer: int                # HSA layer (upper group) index
    chunks: List[Chunk]
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, m) -> "LayerEvidence":
        return cls(m.layer, [Chunk.from_pb(c) for c in m.chunks],
                   extra=_extra(m, ("layer", "chunks")))


@dataclass
class Answer:
    """The result of a query: the answer and the evidence the model attended to."""
    data: bytes               # the whole answer (the streamed pieces concatenated)
    n_tokens: int
    stop: str                 # "eos", "max_tokens" or "cancelled"
    prompt_seconds: float
    generate_seconds: float
    layers: List[LayerEvidence]
    extra: Dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("text", "n_tokens", "stop", "prompt_seconds", "generate_seconds", "layers")

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    @classmethod
    def from_pb(cls, m) -> "Answer":
        return cls(bytes(m.text), m.n_tokens, m.stop, m.prompt_seconds, m.generate_seconds,
                   [LayerEvidence.from_pb(x) for x in m.layers], extra=_extra(m, cls._FIELDS))


@dataclass
class Passage:
    """A search hit: stream bytes [start, end) of the memory, with its text grown to the nearest
    line or sentence ends (bytes [text_offset, text_offset + len(data))), provenance, and the
    score of each signal (search modes: docs/rpc.md)."""
    start: int
    end: int
    score: float              # the mode's score: fused rank (hybrid), BM25 (lexical), probability (model)
    lexical_score: float      # BM25 (0: no question term in it, or mode model)
    model_score: float        # retrieval probability summed over its chunks (0: mode lexical)
    lexical_rank: int         # 1-based rank in each signal's list; 0 = not in it
    model_rank: int
    append_id: int            # the append of byte `start`, and its unix time
    time: int
    last_append_id: int       # the append of byte end - 1
    text_offset: int
    data: bytes
    extra: Dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("chunk", "score", "persisted", "append_id", "byte_offset", "time", "text", "end_offset",
               "text_offset", "lexical_score", "model_score", "lexical_rank", "model_rank", "last_append_id")

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    @classmethod
    def from_pb(cls, m) -> "Passage":
        return cls(m.byte_offset, m.end_offset, m.score, m.lexical_score, m.model_score, m.lexical_rank,
                   m.model_rank, m.append_id, m.time, m.last_append_id, m.text_offset, bytes(m.text),
                   extra=_extra(m, cls._FIELDS))


@dataclass
class SearchResult:
    """The hits of a search, most relevant first; iterates, indexes and len()s as the list."""
    hits: List[Passage]
    extra: Dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.hits)

    def __len__(self):
        return len(self.hits)

    def __getitem__(self, i):
        return self.hits[i]

    @classmethod
    def from_pb(cls, m) -> "SearchResult":
        return cls([Passage.from_pb(c) for c in m.hits], extra=_extra(m, ("hits",)))


@dataclass
class SnapshotResult:
    path: str                 # server-side directory written
    memories: List[str]
    bytes_on_disk: int
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, m) -> "SnapshotResult":
        return cls(m.path, list(m.memories), m.bytes_on_disk,
                   extra=_extra(m, ("path", "memories", "bytes_on_disk")))


@dataclass
class RestoreResult:
    path: str                 # server-side database directory written
    memories: List[MemoryInfo]
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, m) -> "RestoreResult":
        return cls(m.path, [MemoryInfo.from_pb(x) for x in m.memories],
                   extra=_extra(m, ("path", "memories")))


__all__ = ["MemoryInfo", "AppendResult", "Chunk", "LayerEvidence", "Answer", "SearchResult",
           "SnapshotResult", "RestoreResult"]
