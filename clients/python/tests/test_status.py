"""tumorstream.status against a REP socket that answers like a stage's control socket."""

import threading

import pytest
import zmq

import tumorstream
from tumorstream import schema


def test_status_round_trip():
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def serve():
        req = schema.StatusRequest()
        req.ParseFromString(rep.recv())
        assert req.schema_version == schema.SCHEMA_VERSION
        reply = schema.StatusReply(schema_version=1, stage="blender", emitted=12, rejected=1)
        reply.rejected_by_reason.add(name="truncated", value=1)
        rep.send(reply.SerializeToString())

    t = threading.Thread(target=serve)
    t.start()
    r = tumorstream.status(f"tcp://127.0.0.1:{port}", context=ctx)
    t.join()
    assert (r.stage, r.emitted, r.rejected) == ("blender", 12, 1)
    assert [(c.name, c.value) for c in r.rejected_by_reason] == [("truncated", 1)]
    rep.close(0)
    ctx.term()


def test_status_times_out():
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)  # never answers
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    with pytest.raises(TimeoutError):
        tumorstream.status(f"tcp://127.0.0.1:{port}", timeout_ms=100, context=ctx)
    rep.close(0)
    ctx.term()
