import Wire
import XCTest

final class StatusMessagesTests: XCTestCase {
    func testStatusReplyRoundTripsEveryField() throws {
        let r = StatusReply(stage: "sampler", replica: 2, received: 100, emitted: 97, rejected: 3, inFlight: 1,
                            queueDepth: 4, uptimeSeconds: 12.5, busySeconds: 10.25, blockedSeconds: 1.75,
                            lastError: "rejected message (truncated): ...",
                            latency: LatencySummary(count: 97, mean: 0.5, p50: 0.45, p95: 0.9, max: 1.2),
                            rejectedByReason: [("truncated", 2), ("wrong-version", 1)],
                            counters: [("ddim_steps", 4850)])
        let d = try StatusReply.decode(r.encode())
        XCTAssertEqual(d, r)
        XCTAssertEqual(d.rejectedByReason.map(\.name), ["truncated", "wrong-version"])
    }

    func testStatusRequestRoundTripsAndRejectsGarbage() throws {
        XCTAssertEqual(try StatusRequest.decode(StatusRequest().encode()), StatusRequest())
        XCTAssertThrowsError(try StatusRequest.decode([0x08, 0x07])) { e in
            XCTAssertEqual((e as? WireError)?.code, .wrongVersion)
        }
        XCTAssertThrowsError(try StatusReply.decode([0xFF, 0xFF, 0xFF])) { e in
            XCTAssertEqual((e as? WireError)?.code, .malformed)
        }
    }

    func testStatusClientQueriesARepSocket() throws {
        let context = try ZMQContext()
        defer { try? context.close() }
        let rep = try ZMQSocket(context: context, type: .rep)
        try rep.bind("inproc://status-test")
        let expected = StatusReply(stage: "blender", emitted: 7)
        let server = Thread {
            if let f = try? rep.receive(), (try? StatusRequest.decode(f[0].bytes)) != nil {
                _ = try? rep.send(bytes: expected.encode())
            }
        }
        server.start()
        let reply = try StatusClient.query(context: context, endpoint: "inproc://status-test", timeoutMilliseconds: 5000)
        XCTAssertEqual(reply, expected)
        while !server.isFinished { usleep(1000) }
        rep.close()
    }

    func testStatusClientTimesOutWithoutServer() throws {
        let context = try ZMQContext()
        defer { try? context.close() }
        let rep = try ZMQSocket(context: context, type: .rep)  // bound but never answers
        try rep.bind("inproc://status-silent")
        XCTAssertThrowsError(try StatusClient.query(context: context, endpoint: "inproc://status-silent",
                                                    timeoutMilliseconds: 100)) { e in
            XCTAssertTrue(e is StatusClient.Timeout, "\(e)")
        }
        rep.close()
    }
}
