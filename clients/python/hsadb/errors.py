"""Errors of the hsadb client: every failed call raises HsadbError (or a subclass by gRPC
status code) carrying the status code, hsadb's reason and the server's message.

`reason` is machine-readable: the `reason` of a google.rpc.ErrorInfo when the server sends
one (in the grpc-status-details-bin trailer), else the name of the hsadb error the server's
message starts with (hsadb_strerror's text, e.g. "not found: ..." gives "HSADB_ERR_NOTFOUND"),
else None (e.g. a transport failure, or a grant or argument check of the server itself).
"""
import grpc

# hsadb_strerror() texts (util/util.c) and the names of their codes (include/hsadb.h).
_STRERROR = {
    "invalid argument": "HSADB_ERR_INVALID",
    "not found": "HSADB_ERR_NOTFOUND",
    "already exists": "HSADB_ERR_EXISTS",
    "memory is bound to a different model": "HSADB_ERR_MODEL_MISMATCH",
    "invalid model files": "HSADB_ERR_BAD_MODEL",
    "store is corrupt": "HSADB_ERR_CORRUPT",
    "unsupported store format version": "HSADB_ERR_VERSION",
    "memory is busy (another append is running)": "HSADB_ERR_BUSY",
    "no model loaded": "HSADB_ERR_NO_MODEL",
    "cancelled": "HSADB_ERR_CANCELLED",
    "requested device not available": "HSADB_ERR_NODEVICE",
    "database is read-only": "HSADB_ERR_READONLY",
    "storage engine error": "HSADB_ERR_STORE",
}


class HsadbError(Exception):
    """A failed call. code: grpc.StatusCode; reason: see the module's doc; details: the
    server's (or gRPC's) message."""

    def __init__(self, code, details, reason=None):
        self.code = code
        self.details = details or ""
        self.reason = reason
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        super().__init__(f"{name}: {self.details}" + (f" [{reason}]" if reason else ""))


class InvalidArgumentError(HsadbError):
    """INVALID_ARGUMENT: a bad name, question, size, or a malformed request."""


class NotFoundError(HsadbError):
    """NOT_FOUND: no such memory or snapshot."""


class AlreadyExistsError(HsadbError):
    """ALREADY_EXISTS: the memory name or destination is taken."""


class PermissionDeniedError(HsadbError):
    """PERMISSION_DENIED: the key has no grant for this."""


class UnauthenticatedError(HsadbError):
    """UNAUTHENTICATED: no key, or a key not in the server's keys file."""


class FailedPreconditionError(HsadbError):
    """FAILED_PRECONDITION: model mismatch, no model, read-only, snapshots disabled..."""


class UnavailableError(HsadbError):
    """UNAVAILABLE: the server is unreachable or the memory is busy."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def _read_varint(b, i):
    shift = value = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _fields(b):
    """(field number, wire type, value) of a protobuf message's bytes; value is an int
    (varint) or bytes (length-delimited). Raises on other wire types or truncation."""
    i = 0
    while i < len(b):
        key, i = _read_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(b, i)
        elif wt == 2:
            n, i = _read_varint(b, i)
            v, i = b[i:i + n], i + n
            if len(v) != n:
                raise ValueError("truncated")
        else:
            raise ValueError("unexpected wire type")
        yield num, wt, v


_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def error_info_reason(status_details):
    """The reason of the first google.rpc.ErrorInfo in a serialized google.rpc.Status
    (Status.details = 3, Any.type_url = 1, Any.value = 2, ErrorInfo.reason = 1), or None."""
    try:
        for num, wt, any_bytes in _fields(status_details):
            if num != 3 or wt != 2:
                continue
            parts = {n: v for n, w, v in _fields(any_bytes) if w == 2}
            if parts.get(1, b"").decode() != _ERROR_INFO:
                continue
            for n, w, v in _fields(parts.get(2, b"")):
                if n == 1 and w == 2:
                    return v.decode()
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return None


def reason_of(details, trailers=()):
    for key, value in trailers or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            r = error_info_reason(value)
            if r:
                return r
    head = (details or "").split(":", 1)[0].split(" (", 1)[0].strip()
    if (details or "").startswith("memory is busy (another append is running)"):
        return "HSADB_ERR_BUSY"
    return _STRERROR.get(head)


def from_rpc_error(e):
    """The HsadbError for a grpc.RpcError (which is also a grpc.Call)."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    try:
        trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else ()
    except Exception:  # noqa: BLE001 - a failed call may have none
        trailers = ()
    cls = _BY_CODE.get(code, HsadbError)
    return cls(code, details, reason_of(details, trailers))


__all__ = ["HsadbError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError",
           "PermissionDeniedError", "UnauthenticatedError", "FailedPreconditionError",
           "UnavailableError"]
