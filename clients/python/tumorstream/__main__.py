"""Print the patches arriving at an endpoint, one line each:

    python3 -m tumorstream tcp://127.0.0.1:5560 [--sub] [--bind] [--count N] [--timeout-ms MS]
"""

import argparse

from .client import PatchStream


def main():
    ap = argparse.ArgumentParser(prog="python3 -m tumorstream")
    ap.add_argument("endpoint")
    ap.add_argument("--sub", action="store_true", help="subscribe to a tap (PUB) instead of pulling")
    ap.add_argument("--bind", action="store_true", help="bind the endpoint instead of connecting")
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--timeout-ms", type=int, default=None)
    a = ap.parse_args()
    with PatchStream(a.endpoint, kind="sub" if a.sub else "pull", bind=a.bind, max_patches=a.count,
                     timeout_ms=a.timeout_ms) as stream:
        for p in stream:
            arrays = " ".join(f"{k}={a.dtype}{list(a.shape)}" for k, a in p.arrays.items())
            stages = ",".join(t.stage for t in p.header.provenance)
            print(f"patch {p.patch_id} case={p.header.source_case} seed={p.seed} organ={p.organ} "
                  f"tumor={p.tumor_type} synthesize={p.synthesize} {arrays} stages={stages}")
        if stream.rejected:
            print("rejected:", dict(stream.rejected), "last:", stream.last_error)


if __name__ == "__main__":
    main()
