"""Decoding rules of the Python client (no sockets): the same checks and codes as Swift's
PatchMessage.decode."""

import numpy as np
import pytest

import tumorstream
from tumorstream import schema


def sample():
    h = schema.PatchHeader(patch_id=7, source_case="case-1", seed=99, organ=schema.enum_number("Organ", "kidney"),
                           tumor_type=schema.enum_number("TumorType", "small"), synthesize=True)
    h.spacing.extend([0.5, 0.5, 1.0])
    h.affine.extend(np.eye(4).ravel().tolist())
    arrays = {"ct": np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4),
              "label": (np.arange(24) % 3).astype(np.uint8).reshape(2, 3, 4)}
    return h, arrays


def test_round_trip_keeps_header_and_arrays():
    h, arrays = sample()
    p = tumorstream.decode(tumorstream.encode(h, arrays))
    assert (p.patch_id, p.seed, p.organ, p.tumor_type, p.synthesize) == (7, 99, "kidney", "small", True)
    assert p.header.source_case == "case-1"
    assert p.spacing == [0.5, 0.5, 1.0]
    assert np.array_equal(p.affine, np.eye(4))
    assert p["ct"].dtype == np.float32 and p["ct"].shape == (1, 2, 3, 4)
    assert np.array_equal(p["ct"], arrays["ct"])
    assert np.array_equal(p["label"], arrays["label"])
    assert "label" in p and "latent" not in p


def test_big_endian_input_is_sent_little_endian():
    h, _ = sample()
    a = np.arange(6, dtype=">f4")
    frames = tumorstream.encode(h, {"x": a})
    assert bytes(memoryview(frames[1])) == np.arange(6, dtype="<f4").tobytes()


def code_of(frames):
    with pytest.raises(tumorstream.WireError) as e:
        tumorstream.decode(frames)
    return e.value.code


def test_rejections_carry_the_swift_codes():
    h, arrays = sample()
    frames = tumorstream.encode(h, arrays)
    assert code_of([]) == "truncated"
    assert code_of(frames[:-1]) == "truncated"
    assert code_of(frames + [b"x"]) == "malformed"
    assert code_of([b"\xff\xff\xff\xff"] + frames[1:]) == "malformed"
    assert code_of([frames[0], frames[1], bytes(memoryview(frames[2]))[:-1]]) == "truncated"
    assert code_of([frames[0], frames[1], bytes(memoryview(frames[2])) + b"\0"]) == "bad-payload"
    header = bytearray(frames[0])
    assert header[:2] == b"\x08\x01"
    header[1] = 2
    assert code_of([bytes(header)] + frames[1:]) == "wrong-version"
    assert code_of([bytes(frames[0][2:])] + frames[1:]) == "wrong-version"  # no version field


def test_enum_names():
    assert schema.enum_name("Organ", 1) == "liver"
    assert schema.enum_name("TumorType", 4) == "large"
    assert schema.enum_name("Organ", 42) == "unknown(42)"


def test_keep_freed_memory_reports_success_on_glibc():
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert tumorstream.keep_freed_memory() is True
