"""Receiver half of `tumorbench wire` (the Swift side sends and starts this process).

    python3 -m tumorstream.bench --endpoint tcp://127.0.0.1:PORT --runs 10 --per-run 32

The sender alternates blocks of --per-run patches (the order rotating each round): raw blocks (three voxel frames, no header) and
wire blocks (PatchMessage). Raw blocks are read with pyzmq recv_multipart(copy=False) and nothing
else (the libzmq + pyzmq floor); wire blocks with tumorstream.PatchStream (header parse,
validation, numpy views of the payload frames). The first pair is a warm-up.
Prints one JSON line: {"raw": [seconds per block...], "client": [...], "raw_cpu": [process CPU
seconds per block...], "client_cpu": [...], ...}."""

import argparse
import json
import resource
import time

import zmq

from .client import PatchStream
from .memory import keep_freed_memory


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--per-run", type=int, default=32)
    ap.add_argument("--hwm", type=int, default=4)
    ap.add_argument("--keep-freed-memory", action="store_true", help="tune glibc malloc (tumorstream.memory) first")
    a = ap.parse_args()
    if a.keep_freed_memory and not keep_freed_memory():
        raise SystemExit("mallopt unavailable")
    ctx = zmq.Context()
    stream = PatchStream(a.endpoint, hwm=a.hwm, context=ctx)
    stream.socket.setsockopt(zmq.RCVTIMEO, 60000)  # fail (zmq.Again) rather than hang if the sender dies
    socket = stream.socket

    def raw():
        return sum(len(f) for f in socket.recv_multipart(copy=False))

    def client():
        p = stream.receive()
        if p is None:
            raise TimeoutError("no patch within 60 s")
        return sum(x.nbytes for x in p.arrays.values())

    times = {"raw": [], "client": []}
    cpu = {"raw": [], "client": []}  # process CPU time (all threads, incl. libzmq's I/O thread)
    variants = (("raw", raw), ("client", client))
    for r in range(a.runs + 1):
        k = r % len(variants)  # the same rotation as the Swift sender's
        for name, one in variants[k:] + variants[:k]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(a.per_run):
                one()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    print(json.dumps({"raw": times["raw"][1:], "client": times["client"][1:],
                      "raw_cpu": cpu["raw"][1:], "client_cpu": cpu["client"][1:], "rejected": dict(stream.rejected),
                      "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}))
    stream.close()
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
