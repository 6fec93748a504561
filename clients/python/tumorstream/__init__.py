"""TumorStream Python client: read patches streamed by tumord (ZeroMQ multipart messages with a
protobuf PatchHeader and raw little-endian voxel frames) as numpy arrays or torch tensors.

    from tumorstream import PatchStream
    for patch in PatchStream("tcp://127.0.0.1:5560"):
        ct, label = patch["ct"], patch["label"]     # numpy, shapes from the header
        print(patch.patch_id, patch.organ, patch.tumor_type, ct.shape)
"""

from . import schema
from .client import PatchStream, status
from .memory import keep_freed_memory
from .message import Patch, WireError, decode, encode

__all__ = ["PatchStream", "Patch", "WireError", "decode", "encode", "status", "schema", "keep_freed_memory"]
