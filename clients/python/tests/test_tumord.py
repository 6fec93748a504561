"""The Python client against a running `tumord` (release build): the whole graph in one process
(phantom, procedural engine), its last stage binding an `output` endpoint that the client reads,
as a PyTorch trainer would. Checks what arrives (count, shapes, dtypes, header fields, the
synthetic share) against tumord's own summary, and that tumord exits 0 by itself."""

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import tumorstream
from tumorstream import PatchStream

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TUMORD = os.path.join(ROOT, ".build", "release", "tumord")

pytestmark = pytest.mark.skipif(not os.path.exists(TUMORD),
                                reason="needs the release tumord: swift build -c release --product tumord")

STAGES = ["loader", "cropper", "encoder", "sampler", "blender"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_config(tmp_path, output_port, control_port, synth_p=0.5):
    text = f"""seed: 11
pipeline: [{", ".join(STAGES)}]
runtime: {{status_interval_s: 1, idle_timeout_s: 1, drain_timeout_s: 20, linger_ms: 5000}}
data: {{source: phantom, phantom: {{cases: 1, seed: 3, shape: [128, 112, 112]}}, organ: liver, patches_per_case: 8}}
synthesis: {{engine: procedural, synthesize_probability: {synth_p}}}
stages:
  loader: {{}}
  cropper: {{input: "inproc://cropper.in"}}
  encoder: {{input: "inproc://encoder.in"}}
  sampler: {{input: "inproc://sampler.in"}}
  blender: {{input: "inproc://blender.in", output: "tcp://127.0.0.1:{output_port}", output_hwm: 2,
             control: "tcp://127.0.0.1:{control_port}"}}
"""
    path = tmp_path / "python-sink.yaml"
    path.write_text(text)
    return str(path)


def summary(stdout, stage):
    line = [l for l in stdout.splitlines() if l.startswith(f"summary stage={stage} " if stage != "total" else "summary total ")]
    assert line, stdout
    return dict(kv.split("=", 1) for kv in line[-1].split() if "=" in kv)


def wait_bound(ctl_port, timeout=60):
    """Waits until the last stage answers status: its sockets are bound. (Connecting a client to
    a loopback port in the ephemeral range before anyone listens there could connect it to itself.)"""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return tumorstream.status(f"tcp://127.0.0.1:{ctl_port}", timeout_ms=1000)
        except TimeoutError:
            pass
    raise AssertionError(f"no status from tcp://127.0.0.1:{ctl_port} within {timeout} s")


def start_tumord(config, patches, *extra):
    return subprocess.Popen([TUMORD, "run", "--config", config, "--max-patches", str(patches), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_patches_from_a_running_tumord(tmp_path):
    tmp = tmp_path
    out_port, ctl_port, metrics_port = free_ports(3)
    config = write_config(tmp, out_port, ctl_port)
    count = 6
    proc = start_tumord(config, count, "--metrics", f"127.0.0.1:{metrics_port}")
    try:
        # The stage waits for its reader (backpressure): ask its control socket first.
        reply = wait_bound(ctl_port)
        assert reply.stage == "blender"
        # Prometheus text format at /metrics while the graph waits for its reader.
        def scrape():
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
            samples = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, value = line.rsplit(" ", 1)
                    samples[name] = float(value)
            return text, samples

        deadline = time.time() + 60
        text, samples = scrape()
        while samples['tumorstream_emitted_total{stage="loader",replica="0"}'] < 1 and time.time() < deadline:
            time.sleep(0.2)  # the loader is still building the phantom
            text, samples = scrape()
        assert "# TYPE tumorstream_emitted_total counter" in text
        for stage in STAGES:
            assert f'tumorstream_received_total{{stage="{stage}",replica="0"}}' in samples
        assert samples['tumorstream_emitted_total{stage="loader",replica="0"}'] >= 1
        assert samples['tumorstream_blocked_seconds_total{stage="blender",replica="0"}'] >= 0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/other", timeout=10)
        with PatchStream(f"tcp://127.0.0.1:{out_port}", timeout_ms=60000) as stream:
            patches = list(stream)
            assert not stream.rejected
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    total = summary(stdout, "total")
    assert (total["produced"], total["delivered"], total["unaccounted"]) == (str(count), str(count), "0")

    assert len(patches) == count
    assert sorted(p.patch_id for p in patches) == list(range(count))
    stream_ids = {p.header.stream_id for p in patches}
    assert len(stream_ids) == 1 and stream_ids.pop() != 0
    assert len({p.seed for p in patches}) == count
    for p in patches:
        assert p.organ == "liver"
        assert [t.stage for t in p.header.provenance] == STAGES
        assert list(p.header.volume_shape) == [128, 112, 112]
        assert len(p.header.patch_origin) == 3
        assert p.spacing == [1.0, 1.0, 1.0]
        assert p.affine.shape == (4, 4) and p.affine[3, 3] == 1.0
        ct, label = p["ct"], p["label"]
        assert ct.dtype == np.float32 and ct.shape == (96, 96, 96)
        assert label.dtype == np.uint8 and label.shape == (96, 96, 96)
        assert 0.0 <= float(ct.min()) and float(ct.max()) <= 1.0
        assert (label == 1).any(), "the crop is centred on the organ"
        if p.synthesize:
            assert p.tumor_type in ("tiny", "small", "medium", "large")
            mask = p["tumor_mask"]
            assert mask.dtype == np.uint8 and mask.shape == (96, 96, 96) and mask.any()
            assert (label == 2).any(), "a synthesized patch carries the tumor label"
            assert (label[label == 2] == 2).all() and (mask[label == 2] > 0).all(), "label 2 lies inside the tumor mask"
        else:
            assert p.tumor_type == "none"
            assert "tumor_mask" not in p and not (label == 2).any()
    synthesized = sum(p.synthesize for p in patches)
    # The synthetic share is what tumord says it made, and both kinds arrive (seeded run).
    assert synthesized == int(summary(stdout, "sampler")["synthesized"])
    assert 0 < synthesized < count


def test_tumord_without_synthesis_sends_only_real_patches(tmp_path):
    tmp = tmp_path
    out_port, ctl_port = free_ports(2)
    config = write_config(tmp, out_port, ctl_port, synth_p=0.0)
    proc = start_tumord(config, 3)
    try:
        wait_bound(ctl_port)
        with PatchStream(f"tcp://127.0.0.1:{out_port}", timeout_ms=60000, copy=True) as stream:
            patches = list(stream)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert len(patches) == 3
    assert not any(p.synthesize for p in patches)
    assert summary(stdout, "sampler")["synthesized"] == "0"
    assert all(p["ct"].flags.owndata for p in patches)
