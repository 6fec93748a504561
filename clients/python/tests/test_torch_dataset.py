"""TumorStreamDataset feeding a torch DataLoader from the Swift sender (skipped without torch)."""

import os
import subprocess

import pytest
import zmq

torch = pytest.importorskip("torch")

from tumorstream.torch_dataset import TumorStreamDataset  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BINARY = os.path.join(ROOT, ".build", "release", "tumorbench")


@pytest.mark.skipif(not os.path.exists(BINARY), reason="needs the release tumorbench")
def test_dataloader_batches_patches():
    ctx = zmq.Context.instance()
    probe = ctx.socket(zmq.PUSH)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)
    endpoint = f"tcp://127.0.0.1:{port}"
    sender = subprocess.Popen([BINARY, "wire-send", "--endpoint", endpoint, "--bind", "--count", "4", "--side", "16"])
    ds = TumorStreamDataset(endpoint, max_patches=4, timeout_ms=30000)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0))
    sender.wait(timeout=60)
    assert len(batches) == 2
    image, label = batches[0]
    assert image.shape == (2, 1, 16, 16, 16) and image.dtype == torch.float32
    assert label.shape == (2, 1, 16, 16, 16) and label.dtype == torch.int64


def test_patch_torch_shares_or_copies():
    import numpy as np

    import tumorstream
    from tumorstream import schema

    frames = tumorstream.encode(schema.PatchHeader(patch_id=1), {"ct": np.ones((2, 2), np.float32)})
    t = tumorstream.decode(frames).torch()["ct"]
    assert t.dtype == torch.float32 and tuple(t.shape) == (2, 2) and float(t.sum()) == 4.0
