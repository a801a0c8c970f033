"""ctypes binding of hsadb's C byte-level BPE tokenizer (tokenizer/bpe.h, libhsadb_bpe.so).

The training code tokenizes at C speed with it on machines without node:

    from bpe_c import Tokenizer
    tok = Tokenizer("tokenizer.json")            # any file tokenizer/bpe.h supports
    ids = tok.encode(b"some bytes")               # list of ints (bytes or str; str is UTF-8)
    arr = tok.encode_np(b"some bytes")            # numpy uint32 array, no Python list
    tok.decode(ids) == b"some bytes"
    tok.token_id("<eos>"), tok.vocab_size

The library is found at $HSADB_BPE_LIB, else next to the build trees of this checkout (build/,
build-*/). It needs libjansson.so.4 and libutf8proc.so.2; on a machine without them (the GPU
machine) copy those two files next to libhsadb_bpe.so (its RPATH is $ORIGIN).
Errors raise TokenizerError with the library's message.
"""
import ctypes
import glob
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
_ERANGE = 34


class TokenizerError(RuntimeError):
    pass


def _find_lib():
    env = os.environ.get("HSADB_BPE_LIB")
    if env:
        return env
    for d in ["build"] + sorted(glob.glob(os.path.join(_ROOT, "build-*"))):
        p = os.path.join(_ROOT, d, "libhsadb_bpe.so")
        if os.path.exists(p):
            return p
    raise TokenizerError("libhsadb_bpe.so not found: build the hsadb_bpe target or set HSADB_BPE_LIB")


_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(_find_lib())
    P, S, U32P = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32)
    lib.hsadb_tokenizer_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(P)]
    lib.hsadb_tokenizer_open.restype = ctypes.c_int
    lib.hsadb_tokenizer_close.argtypes = [P]
    lib.hsadb_tokenizer_close.restype = None
    lib.hsadb_tokenizer_encode.argtypes = [P, ctypes.c_char_p, S, U32P, S, ctypes.POINTER(S)]
    lib.hsadb_tokenizer_encode.restype = ctypes.c_int
    lib.hsadb_tokenizer_decode.argtypes = [P, U32P, S, ctypes.c_char_p, S, ctypes.POINTER(S)]
    lib.hsadb_tokenizer_decode.restype = ctypes.c_int
    lib.hsadb_tokenizer_token_id.argtypes = [P, ctypes.c_char_p]
    lib.hsadb_tokenizer_token_id.restype = ctypes.c_int64
    lib.hsadb_tokenizer_vocab_size.argtypes = [P]
    lib.hsadb_tokenizer_vocab_size.restype = ctypes.c_uint32
    lib.hsadb_tokenizer_is_special.argtypes = [P, ctypes.c_uint32]
    lib.hsadb_tokenizer_is_special.restype = ctypes.c_int
    lib.hsadb_last_error.argtypes = []
    lib.hsadb_last_error.restype = ctypes.c_char_p
    lib.hsadb_strerror.argtypes = [ctypes.c_int]
    lib.hsadb_strerror.restype = ctypes.c_char_p
    _lib = lib
    return lib


def _error(lib, rc, what):
    detail = (lib.hsadb_last_error() or b"").decode("utf-8", "replace")
    name = (lib.hsadb_strerror(rc) or b"").decode("utf-8", "replace")
    return TokenizerError(f"{what}: {name}" + (f" ({detail})" if detail else ""))


class Tokenizer:
    def __init__(self, path):
        lib = _load()
        h = ctypes.c_void_p()
        rc = lib.hsadb_tokenizer_open(os.fsencode(path), ctypes.byref(h))
        if rc:
            raise _error(lib, rc, f"open {path}")
        self._lib, self._h = lib, h
        self.vocab_size = lib.hsadb_tokenizer_vocab_size(h)
        self._cap = 1 << 16
        self._buf = (ctypes.c_uint32 * self._cap)()

    def close(self):
        if self._h:
            self._lib.hsadb_tokenizer_close(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _encode(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        data = bytes(data)
        n = ctypes.c_size_t()
        rc = self._lib.hsadb_tokenizer_encode(self._h, data, len(data), self._buf, self._cap, ctypes.byref(n))
        if rc == _ERANGE:
            while self._cap < n.value:
                self._cap *= 2
            self._buf = (ctypes.c_uint32 * self._cap)()
            rc = self._lib.hsadb_tokenizer_encode(self._h, data, len(data), self._buf, self._cap, ctypes.byref(n))
        if rc:
            raise _error(self._lib, rc, "encode")
        return n.value

    def encode(self, data):
        """Token ids of `data` (bytes, or str taken as UTF-8), as a list of ints."""
        n = self._encode(data)   # first: it may replace self._buf
        return self._buf[:n]

    def encode_np(self, data):
        """Token ids of `data` as a new numpy uint32 array."""
        import numpy as np

        n = self._encode(data)
        return np.ctypeslib.as_array(self._buf)[:n].copy()

    def decode(self, ids):
        """The bytes that `ids` stand for (added tokens as their text)."""
        ids = list(ids)
        arr = (ctypes.c_uint32 * max(len(ids), 1))(*ids)
        cap = max(16, 8 * len(ids))
        for _ in range(2):
            out = ctypes.create_string_buffer(cap)
            n = ctypes.c_size_t()
            rc = self._lib.hsadb_tokenizer_decode(self._h, arr, len(ids), out, cap, ctypes.byref(n))
            if rc == _ERANGE:
                cap = n.value
                continue
            if rc:
                raise _error(self._lib, rc, "decode")
            return out.raw[: n.value]
        raise TokenizerError("decode: output size changed")

    def token_id(self, text):
        """Id of the token spelled `text` (e.g. "<eos>"), or None."""
        i = self._lib.hsadb_tokenizer_token_id(self._h, text.encode("utf-8"))
        return None if i < 0 else i

    def is_special(self, token_id):
        return bool(self._lib.hsadb_tokenizer_is_special(self._h, token_id))
