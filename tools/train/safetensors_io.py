"""Minimal safetensors writer/reader (no dependency on the safetensors package).

Format: 8-byte little-endian header length N, then N bytes of JSON
  {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
(padded with spaces to a multiple of 8), then the raw little-endian tensor bytes; offsets are
relative to the start of the data area.  Supported dtypes: F32, BF16, F64, F16, I32, I64, I16, I8, U8.
"""
import json
import struct

import numpy as np
import torch

_TORCH2ST = {
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float64: "F64", torch.float16: "F16",
    torch.int32: "I32", torch.int64: "I64", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
}
_ST2NP = {
    "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I32": np.dtype("<i4"), "I64": np.dtype("<i8"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}


def _to_bytes(t):
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        a = t.view(torch.int16).numpy().astype("<i2", copy=False)
    else:
        a = t.numpy()
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return a.tobytes()


def save_file(tensors, path, metadata=None):
    """tensors: dict name -> torch.Tensor (or numpy array).  Written in sorted name order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        if t.dtype not in _TORCH2ST:
            raise TypeError("unsupported dtype %s for %s" % (t.dtype, name))
        b = _to_bytes(t)
        header[name] = {"dtype": _TORCH2ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n).decode("utf-8"))


def load_file(path, with_metadata=False):
    """Returns dict name -> torch.Tensor (and the metadata dict if with_metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = info["dtype"]
        a = np.frombuffer(data, dtype=_ST2NP[dt], count=(e - b) // _ST2NP[dt].itemsize, offset=base + b)
        a = a.reshape(info["shape"]).copy()
        if dt == "BF16":
            t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(a.astype(a.dtype.newbyteorder("="), copy=False))
        out[name] = t
    return (out, meta) if with_metadata else out
