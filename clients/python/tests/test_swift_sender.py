"""The Python client against the Swift sender (`tumorbench wire-send`, release build):
cross-language check of the header fields, the payload bytes and the rejection of bad messages."""

import os
import subprocess

import numpy as np
import pytest

from tumorstream import PatchStream

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BINARY = os.path.join(ROOT, ".build", "release", "tumorbench")

pytestmark = pytest.mark.skipif(not os.path.exists(BINARY),
                                reason="needs the release tumorbench: swift build -c release --product tumorbench")


def expected_arrays(k, side):
    i = np.arange(side ** 3)
    ct = ((i % 997).astype(np.float32) / np.float32(997) + np.float32(k)).reshape(1, side, side, side)
    label = ((i + k) % 3).astype(np.uint8).reshape(side, side, side)
    mask = ((i + k) % 5 == 0).astype(np.uint8).reshape(side, side, side)
    return ct, label, mask


def run_sender(endpoint, *args):
    return subprocess.Popen([BINARY, "wire-send", "--endpoint", endpoint, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_patches_from_swift_decode_with_every_field():
    side, count = 16, 5
    with PatchStream("tcp://127.0.0.1:*", bind=True, timeout_ms=30000) as stream:
        endpoint = stream.socket.getsockopt_string(__import__("zmq").LAST_ENDPOINT)
        sender = run_sender(endpoint, "--count", str(count), "--side", str(side), "--bad")
        patches = list(stream)
        out, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        assert len(patches) == count
        assert dict(stream.rejected) == {"wrong-version": 1, "truncated": 1}
        assert "schema version 99" in str(stream.last_error) or stream.last_error.code == "truncated"
    tumor_types = ["none", "tiny", "small", "medium", "large"]
    for k, p in enumerate(patches):
        assert p.patch_id == k
        assert p.seed == 1000 + k
        assert p.organ == "liver"
        assert p.tumor_type == tumor_types[k % 5]
        assert p.synthesize == (k % 2 == 1)
        assert p.header.source_case == f"phantom-{k}"
        assert list(p.header.volume_shape) == [2 * side] * 3
        assert list(p.header.patch_origin) == [k, 0, 0]
        assert p.spacing == [1.0, 1.0, 1.0]
        assert np.array_equal(p.affine, np.eye(4))
        assert [t.stage for t in p.header.provenance] == ["wire-send"]
        ct, label, mask = expected_arrays(k, side)
        assert p["ct"].dtype == np.float32 and p["ct"].shape == ct.shape
        assert np.array_equal(p["ct"], ct)
        assert np.array_equal(p["label"], label)
        assert np.array_equal(p["tumor_mask"], mask)
        assert not p["ct"].flags.owndata  # a zero-copy view of the ZeroMQ frame


def test_copy_mode_gives_writable_arrays():
    with PatchStream("tcp://127.0.0.1:*", bind=True, timeout_ms=30000, copy=True) as stream:
        endpoint = stream.socket.getsockopt_string(__import__("zmq").LAST_ENDPOINT)
        sender = run_sender(endpoint, "--count", "2", "--side", "8")
        patches = list(stream)
        sender.communicate(timeout=60)
    assert len(patches) == 2
    assert patches[1]["ct"].flags.writeable and patches[1]["ct"].flags.owndata
    patches[1]["ct"][0, 0, 0, 0] = -1  # a trainer may augment in place


def test_real_size_patch():
    with PatchStream("tcp://127.0.0.1:*", bind=True, timeout_ms=60000) as stream:
        endpoint = stream.socket.getsockopt_string(__import__("zmq").LAST_ENDPOINT)
        sender = run_sender(endpoint, "--count", "1", "--side", "96")
        patches = list(stream)
        sender.communicate(timeout=120)
    assert len(patches) == 1
    ct, label, _ = expected_arrays(0, 96)
    assert patches[0]["ct"].nbytes == 96 ** 3 * 4
    assert np.array_equal(patches[0]["ct"], ct)
    assert np.array_equal(patches[0]["label"], label)
