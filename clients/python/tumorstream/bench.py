"""Receiver half of `tumorbench wire` (the Swift side sends and starts this process).

    python3 -m tumorstream.bench --endpoint tcp://127.0.0.1:PORT --runs 10 --per-run 32

The sender alternates blocks of --per-run patches (the order rotating each round): raw blocks (three voxel frames, no header) and
wire blocks (PatchMessage). Raw blocks are read with pyzmq recv_multipart(copy=False) and nothing
else (the libzmq + pyzmq floor); wire blocks with tumorstream.PatchStream (header parse,
validation, numpy views of the payload frames). The first pair is a warm-up.
Prints one JSON line: {"raw": [seconds per run...], "client": [...]}."""

import argparse
import json
import time

import zmq

from .client import PatchStream


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--per-run", type=int, default=32)
    ap.add_argument("--hwm", type=int, default=4)
    a = ap.parse_args()
    ctx = zmq.Context()
    stream = PatchStream(a.endpoint, hwm=a.hwm, context=ctx)
    socket = stream.socket

    def raw():
        return sum(len(f) for f in socket.recv_multipart(copy=False))

    def client():
        p = stream.receive()
        return sum(x.nbytes for x in p.arrays.values())

    times = {"raw": [], "client": []}
    variants = (("raw", raw), ("client", client))
    for r in range(a.runs + 1):
        k = r % len(variants)  # the same rotation as the Swift sender's
        for name, one in variants[k:] + variants[:k]:
            t0 = time.perf_counter()
            for _ in range(a.per_run):
                one()
            times[name].append(time.perf_counter() - t0)
    print(json.dumps({"raw": times["raw"][1:], "client": times["client"][1:], "rejected": dict(stream.rejected)}))
    stream.close()
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
