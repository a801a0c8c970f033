"""hsadb: the Python client of the hsadb gRPC service (`hsadb serve`, docs/rpc.md).

    from hsadb import Client, NotFoundError
    with Client("127.0.0.1:50051", key=None) as db:
        db.create("notes")
        db.append("notes", open("conversation.txt", "rb"))
        for piece in (q := db.query_stream("notes", "What is the user allergic to?")):
            print(piece.decode(errors="replace"), end="")
        print(q.result.layers[0].chunks[0].append_id)
"""
from .client import Client, QueryStream
from .errors import (AlreadyExistsError, FailedPreconditionError, HsadbError,
                     InvalidArgumentError, NotFoundError, PermissionDeniedError,
                     UnauthenticatedError, UnavailableError)
from .types import (Answer, AppendResult, Chunk, LayerEvidence, MemoryInfo, Passage, RestoreResult,
                    SearchResult, SnapshotResult)

__version__ = "0.1.0"

__all__ = ["Client", "QueryStream", "HsadbError", "InvalidArgumentError", "NotFoundError",
           "AlreadyExistsError", "PermissionDeniedError", "UnauthenticatedError",
           "FailedPreconditionError", "UnavailableError", "Answer", "AppendResult", "Chunk",
           "LayerEvidence", "MemoryInfo", "Passage", "RestoreResult", "SearchResult", "SnapshotResult"]
