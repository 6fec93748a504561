"""Reading a TumorStream: a PULL (pipeline output) or SUB (tap) socket that yields Patch objects."""

import collections
from typing import Iterator, Optional

import zmq

from . import memory, schema
from .message import Patch, WireError, decode


class PatchStream:
    """Iterates over the patches arriving at `endpoint`.

    kind="pull": connect (or bind) a PULL socket to a stage's output. Every patch goes to exactly
        one reader; several readers share the stream (ZeroMQ fair-queues), and a slow reader
        slows the pipeline (backpressure) instead of losing patches.
    kind="sub":  subscribe to a stage's tap. Never slows the pipeline; drops when behind.

    copy=False (default) makes the numpy arrays views of the received ZeroMQ frames: no copy on
    the Python side (whether the views are writable depends on the pyzmq version; with pyzmq 27
    they are, and the memory belongs to this message alone). copy=True gives arrays that own a copy.
    Bad messages are skipped and counted in `rejected` (by reason), the last one in `last_error`.
    keep_freed_memory=True tunes glibc's malloc process-wide so that the receive buffers are
    reused instead of faulted in again for every patch (see tumorstream.memory).
    Iteration stops at an end-of-stream marker (stop_at_end), after `max_patches`, or when
    nothing arrives for `timeout_ms` (None: wait forever).
    """

    def __init__(self, endpoint: str, kind: str = "pull", bind: bool = False, hwm: int = 4,
                 timeout_ms: Optional[int] = None, copy: bool = False, max_patches: Optional[int] = None,
                 stop_at_end: bool = True, context: Optional[zmq.Context] = None,
                 keep_freed_memory: bool = False):
        if kind not in ("pull", "sub"):
            raise ValueError(f"kind must be 'pull' or 'sub', not {kind!r}")
        if keep_freed_memory:
            memory.keep_freed_memory()
        self.endpoint = endpoint
        self.copy = copy
        self.max_patches = max_patches
        self.stop_at_end = stop_at_end
        self.received = 0
        self.rejected = collections.Counter()
        self.last_error: Optional[WireError] = None
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.PULL if kind == "pull" else zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        if timeout_ms is not None:
            self.socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
        if kind == "sub":
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        (self.socket.bind if bind else self.socket.connect)(endpoint)

    def receive(self) -> Optional[Patch]:
        """The next good patch (or end-of-stream marker); None on timeout."""
        while True:
            try:
                frames = self.socket.recv_multipart(copy=self.copy)
            except zmq.Again:
                return None
            try:
                patch = decode(frames)
            except WireError as e:
                self.rejected[e.code] += 1
                self.last_error = e
                continue
            if self.copy:
                patch.arrays = {k: a.copy() for k, a in patch.arrays.items()}
            return patch

    def __iter__(self) -> Iterator[Patch]:
        while self.max_patches is None or self.received < self.max_patches:
            patch = self.receive()
            if patch is None:
                return
            if patch.end_of_stream:
                if self.stop_at_end:
                    return
                continue
            self.received += 1
            yield patch

    def close(self):
        self.socket.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def status(endpoint: str, timeout_ms: int = 2000, context: Optional[zmq.Context] = None):
    """Asks a stage's control socket for its StatusReply (a protobuf message); raises
    TimeoutError when no reply arrives in time."""
    ctx = context or zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    s.setsockopt(zmq.SNDTIMEO, timeout_ms)
    try:
        s.connect(endpoint)
        req = schema.StatusRequest(schema_version=schema.SCHEMA_VERSION)
        s.send(req.SerializeToString())
        try:
            raw = s.recv()
        except zmq.Again:
            raise TimeoutError(f"no status reply from {endpoint} within {timeout_ms} ms") from None
        reply = schema.StatusReply()
        reply.ParseFromString(raw)
        if reply.schema_version != schema.SCHEMA_VERSION:
            raise WireError("wrong-version", f"status reply has schema version {reply.schema_version}")
        return reply
    finally:
        s.close(0)
