"""Decoding and encoding of one patch message: frame 0 is a PatchHeader, frames 1..n the raw
little-endian voxel payloads in header order (see proto/tumorstream.proto)."""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from . import schema

_NUMPY_DTYPES = {
    schema.DTYPE_FLOAT32: np.dtype("<f4"),
    schema.DTYPE_UINT8: np.dtype("u1"),
    schema.DTYPE_INT16: np.dtype("<i2"),
    schema.DTYPE_INT32: np.dtype("<i4"),
    schema.DTYPE_FLOAT16: np.dtype("<f2"),
}
_PROTO_DTYPES = {v: k for k, v in _NUMPY_DTYPES.items()}


class WireError(ValueError):
    """A message the client cannot read. `code` matches the Swift WireError codes:
    'malformed', 'truncated', 'wrong-version', 'bad-payload'."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"rejected message ({code}): {reason}")
        self.code = code
        self.reason = reason


@dataclass
class Patch:
    """One patch: its header (a PatchHeader protobuf message) and its payloads as numpy arrays.
    Arrays received with copy=False are views of the ZeroMQ frames (no copy)."""

    header: "schema.PatchHeader"
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    @property
    def patch_id(self) -> int:
        return self.header.patch_id

    @property
    def seed(self) -> int:
        return self.header.seed

    @property
    def organ(self) -> str:
        return schema.enum_name("Organ", self.header.organ)

    @property
    def tumor_type(self) -> str:
        return schema.enum_name("TumorType", self.header.tumor_type)

    @property
    def synthesize(self) -> bool:
        return self.header.synthesize

    @property
    def end_of_stream(self) -> bool:
        return self.header.end_of_stream

    @property
    def spacing(self) -> List[float]:
        return list(self.header.spacing)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel -> world (RAS+, mm), or None when the sender left it empty."""
        return np.array(self.header.affine, dtype=np.float64).reshape(4, 4) if len(self.header.affine) == 16 else None

    def torch(self) -> Dict[str, "object"]:
        """The payloads as torch tensors (needs torch): writable arrays are shared without a copy,
        read-only ones (older pyzmq) are copied first, since torch tensors are writable."""
        import torch

        return {k: torch.from_numpy(a if a.flags.writeable else a.copy()) for k, a in self.arrays.items()}


def _frame_bytes(frame):
    """(buffer, size) of a pyzmq Frame (copy=False), bytes (copy=True) or any buffer (tests)."""
    buf = getattr(frame, "buffer", frame)
    return buf, (len(frame) if isinstance(frame, (bytes, bytearray)) or hasattr(frame, "buffer") else memoryview(buf).nbytes)


def _layout(descriptors):
    """[(name, numpy dtype, shape, bytes)] of validated payload descriptors; raises WireError."""
    layout, names = [], set()
    for d in descriptors:
        name = d.name
        if not name:
            raise WireError("malformed", "payload has no name")
        if name in names:
            raise WireError("malformed", f'payload name "{name}" appears twice')
        names.add(name)
        dtype = _NUMPY_DTYPES.get(d.dtype)
        if dtype is None:
            raise WireError("bad-payload", f"payload {name} has unknown dtype {d.dtype}")
        shape = tuple(d.shape)
        if len(shape) > 8:
            raise WireError("bad-payload", f"payload {name} has rank {len(shape)}, at most 8 supported")
        need = dtype.itemsize * math.prod(shape)
        if need != d.byte_length:
            raise WireError("bad-payload", f"payload {name}: shape {shape} needs {need} bytes, header says {d.byte_length}")
        layout.append((name, dtype, shape, need))
    return layout


_last_layout = (None, None)

try:
    import zmq as _zmq

    _ZMQ_FRAME = _zmq.Frame
except ImportError:  # decode() on plain buffers works without pyzmq
    _ZMQ_FRAME = None


def decode(frames: Sequence) -> Patch:
    """Validates and decodes one multipart message. Raises WireError on anything unreadable."""
    if not frames:
        raise WireError("truncated", "message has no frames")
    first = frames[0]
    raw = first.bytes if hasattr(first, "bytes") else bytes(first)
    if len(raw) >= 2 and raw[0] == 0x08 and raw[1] != schema.SCHEMA_VERSION:  # field 1 leads the header
        version, shift = 0, 0
        for b in raw[1:11]:
            version |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if version != schema.SCHEMA_VERSION:
            raise WireError("wrong-version", f"patch header has schema version {version}, this client reads {schema.SCHEMA_VERSION}")
    header = schema.PatchHeader()
    try:
        header.ParseFromString(raw)
    except Exception as e:  # google.protobuf.message.DecodeError
        raise WireError("malformed", f"patch header ({len(raw)} bytes) does not parse: {e}") from None
    if header.schema_version != schema.SCHEMA_VERSION:
        raise WireError("wrong-version", f"patch header has schema version {header.schema_version}")
    descriptors = header.payloads
    n = len(descriptors)
    if len(frames) - 1 < n:
        raise WireError("truncated", f"header lists {n} payloads, message has {len(frames) - 1} payload frames")
    if len(frames) - 1 > n:
        raise WireError("malformed", f"header lists {n} payloads, message has {len(frames) - 1} payload frames")
    global _last_layout
    ref, layout = _last_layout
    if ref is None or descriptors != ref.payloads:
        # A stream repeats the same payload descriptors: validate them once, then compare (one
        # C-level comparison instead of reading every field through the protobuf runtime).
        layout = _layout(descriptors)
        ref = schema.PatchHeader()
        ref.payloads.extend(descriptors)
        _last_layout = (ref, layout)
    arrays = {}
    for (name, dtype, shape, need), frame in zip(layout, frames[1:]):
        buf = frame.buffer if type(frame) is _ZMQ_FRAME else _frame_bytes(frame)[0]
        size = memoryview(buf).nbytes if type(buf) is not memoryview else buf.nbytes
        if size != need:
            if size < need:
                raise WireError("truncated", f"payload {name}: frame has {size} bytes, expected {need}")
            raise WireError("bad-payload", f"payload {name}: frame has {size} bytes, expected {need}")
        arrays[name] = np.ndarray(shape, dtype, buffer=buf)
    return Patch(header, arrays)


def encode(header: "schema.PatchHeader", arrays: Dict[str, np.ndarray]) -> List:
    """Frames for a patch (used by tests and by Python producers): fills schema_version and the
    payload descriptors from `arrays`, in their order."""
    h = schema.PatchHeader()
    h.CopyFrom(header)
    h.schema_version = schema.SCHEMA_VERSION
    del h.payloads[:]
    frames = [None]
    for name, a in arrays.items():
        little = a.dtype.newbyteorder("<")
        a = np.ascontiguousarray(a, dtype=little)
        dt = _PROTO_DTYPES.get(little)
        if dt is None:
            raise ValueError(f"payload {name}: dtype {a.dtype} is not on the wire (float32, uint8, int16, int32, float16)")
        d = h.payloads.add()
        d.name = name
        d.dtype = dt
        d.shape.extend(a.shape)
        d.byte_length = a.nbytes
        frames.append(a)
    frames[0] = h.SerializeToString()
    return frames
