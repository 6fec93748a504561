import Foundation
import Kernels
import Wire
import XCTest

final class ZMQSocketTests: XCTestCase {
    var context: ZMQContext!

    override func setUpWithError() throws { context = try ZMQContext() }

    override func tearDownWithError() throws {
        try context.close()
        context = nil
    }

    func pair(_ endpoint: String, sendHWM: Int = 1000, receiveHWM: Int = 1000) throws -> (push: ZMQSocket, pull: ZMQSocket) {
        let pull = try ZMQSocket(context: context, type: .pull)
        try pull.set([.receiveHighWaterMark(receiveHWM), .receiveTimeout(milliseconds: 5000)])
        try pull.bind(endpoint)
        let push = try ZMQSocket(context: context, type: .push)
        try push.set([.sendHighWaterMark(sendHWM), .sendTimeout(milliseconds: 5000)])
        try push.connect(pull.lastEndpoint ?? endpoint)
        return (push, pull)
    }

    func checkPushPullCarriesPatches(_ endpoint: String) throws {
        let (push, pull) = try pair(endpoint)
        defer { push.close(); pull.close() }
        let sent = PatchMessageTests.sample(side: 16)
        for i in 0..<5 {
            var m = sent
            m.patchID = UInt64(i)
            XCTAssertTrue(try push.send(m.encode()))
        }
        for i in 0..<5 {
            let frames = try XCTUnwrap(try pull.receive())
            let m = try PatchMessage.decode(frames: frames)
            XCTAssertEqual(m.patchID, UInt64(i), "PUSH/PULL keeps order on one connection")
            PatchMessageTests.assertSameHeader(m, { var s = sent; s.patchID = UInt64(i); return s }())
            PatchMessageTests.assertSamePayloads(m, sent)
        }
    }

    func testPushPullOverInproc() throws {
        try checkPushPullCarriesPatches("inproc://push-pull")
    }

    func testPushPullOverTcpLoopback() throws {
        try checkPushPullCarriesPatches("tcp://127.0.0.1:*")
    }

    func testBindReportsChosenPortAndBadEndpointNamesIt() throws {
        let s = try ZMQSocket(context: context, type: .pull)
        defer { s.close() }
        try s.bind("tcp://127.0.0.1:*")
        let ep = try XCTUnwrap(s.lastEndpoint)
        XCTAssertTrue(ep.hasPrefix("tcp://127.0.0.1:"), ep)
        XCTAssertNotEqual(ep, "tcp://127.0.0.1:*")
        let other = try ZMQSocket(context: context, type: .pull)
        defer { other.close() }
        XCTAssertThrowsError(try other.bind(ep)) { e in
            let z = e as? ZMQError
            XCTAssertEqual(z?.endpoint, ep)
            XCTAssertEqual(z?.socketType, .pull)
            XCTAssertTrue("\(e)".contains(ep), "\(e)")
        }
    }

    func checkFullPushReportsWouldBlock(_ endpoint: String, frameBytes: Int) throws {
        let (push, pull) = try pair(endpoint, sendHWM: 1, receiveHWM: 1)
        defer { push.close(); pull.close() }
        try push.set(.sendTimeout(milliseconds: 50))
        let payload = Tensor(zeros: [frameBytes / 4])
        var accepted = 0
        var blocked = false
        for _ in 0..<200 {
            if try push.send([.bytes([1]), .tensor(payload)]) { accepted += 1 } else { blocked = true; break }
        }
        XCTAssertTrue(blocked, "PUSH never blocked after \(accepted) messages with HWM 1")
        XCTAssertGreaterThanOrEqual(accepted, 1)
        // Non-blocking mode reports the same without waiting.
        XCTAssertFalse(try push.send([.bytes([1])], mode: .dontWait))
        // Reading frees room: the sender can go on, nothing was lost or duplicated.
        try push.set(.sendTimeout(milliseconds: 5000))
        var received = 0
        while let _ = try pull.receive(mode: received < accepted ? .blocking : .dontWait) { received += 1 }
        XCTAssertEqual(received, accepted)
        XCTAssertTrue(try push.send([.bytes([2])]))
        XCTAssertEqual(try pull.receive()?.first?.bytes, [2])
    }

    func testFullPushReportsWouldBlockOverInproc() throws {
        try checkFullPushReportsWouldBlock("inproc://hwm", frameBytes: 4096)
    }

    func testFullPushReportsWouldBlockOverTcp() throws {
        // tcp adds the kernel's socket buffers to the HWMs: messages are larger so they fill fast.
        try checkFullPushReportsWouldBlock("tcp://127.0.0.1:*", frameBytes: 1 << 20)
    }

    func testPubDropsForSlowSubscriberWithoutBlocking() throws {
        let pub = try ZMQSocket(context: context, type: .pub)
        defer { pub.close() }
        try pub.set([.sendHighWaterMark(2), .sendTimeout(milliseconds: 2000)])
        try pub.bind("inproc://tap")
        let sub = try ZMQSocket(context: context, type: .sub)
        defer { sub.close() }
        try sub.set([.receiveHighWaterMark(2), .subscribe([])])
        try sub.connect("inproc://tap")
        // Wait for the subscription to arrive (slow joiner): publish until one message gets through.
        var joined = false
        for _ in 0..<200 where !joined {
            try pub.send(bytes: [0])
            joined = try !sub.poll(.readable, timeoutMilliseconds: 10).isEmpty
        }
        XCTAssertTrue(joined)
        while try sub.receive(mode: .dontWait) != nil {}

        let payload = Tensor(zeros: [64 * 1024])
        for i in 0..<300 {
            // A blocking send on a PUB never waits: every send is accepted (and dropped if full).
            XCTAssertTrue(try pub.send([.bytes([1, UInt8(i % 256)]), .tensor(payload)]))
        }
        var received = 0
        while let _ = try sub.receive(mode: .dontWait) { received += 1 }
        XCTAssertGreaterThan(received, 0)
        XCTAssertLessThan(received, 300, "a subscriber that does not read must lose messages")
    }

    func testZeroCopySendKeepsTensorAliveUntilZeroMQFreesIt() throws {
        let (push, pull) = try pair("inproc://zero-copy")
        defer { push.close(); pull.close() }
        let before = Wire.zeroCopyFramesInFlight
        let count = 256 * 1024
        do {
            var t = Tensor(uninitialized: [count])
            t.withUnsafeMutableBufferPointer { b in for i in 0..<count { b[i] = Float(i) } }
            XCTAssertTrue(try push.send([.bytes([7]), .tensor(t)]))
        }  // the sender's last reference to the tensor is gone; ZeroMQ's owner keeps it
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.frames, before.frames + 1)
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.bytes, before.bytes + count * 4)
        // Churn the allocator: a freed buffer would likely be reused and overwritten here.
        var junk: [Tensor] = []
        for _ in 0..<8 { junk.append(Tensor(shape: [count], repeating: -1)) }
        let frames = try XCTUnwrap(try pull.receive())
        XCTAssertEqual(frames.count, 2)
        XCTAssertEqual(frames[1].count, count * 4)
        frames[1].withUnsafeBytes { raw in
            let f = raw.bindMemory(to: Float.self)
            XCTAssertEqual(f[0], 0)
            XCTAssertEqual(f[12345], 12345)
            XCTAssertEqual(f[count - 1], Float(count - 1))
        }
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.frames, before.frames + 1, "the receiver's frame still holds it")
        _ = junk
        withExtendedLifetime(frames) {}
        // After the last frame is released, ZeroMQ calls the free function.
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.frames, before.frames)
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.bytes, before.bytes)
    }

    /// The memory a blocked sender holds is bounded by the high-water marks: every tensor that
    /// ZeroMQ accepted is retained, and nothing beyond what the HWMs let through.
    func testZeroCopyMemoryIsBoundedByHighWaterMarks() throws {
        let (push, pull) = try pair("inproc://bounded", sendHWM: 2, receiveHWM: 2)
        defer { push.close(); pull.close() }
        let before = Wire.zeroCopyFramesInFlight
        let patch = Tensor(zeros: [96 * 96 * 96])  // 3.5 MB, zero-copy
        var accepted = 0
        for _ in 0..<100 {
            guard try push.send([.bytes([0]), .tensor(patch)], mode: .dontWait) else { break }
            accepted += 1
        }
        XCTAssertGreaterThanOrEqual(accepted, 2)
        XCTAssertLessThanOrEqual(accepted, 2 * (2 + 2), "inproc queues at most about SNDHWM + RCVHWM messages")
        let held = Wire.zeroCopyFramesInFlight
        XCTAssertEqual(held.frames - before.frames, accepted)
        XCTAssertEqual(held.bytes - before.bytes, accepted * patch.count * 4)
        for _ in 0..<accepted { XCTAssertNotNil(try pull.receive()) }
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.frames, before.frames, "received and released: ZeroMQ let go of every tensor")
    }

    func testFailedSendReleasesZeroCopyOwner() throws {
        let push = try ZMQSocket(context: context, type: .push)  // no peer: a PUSH blocks
        defer { push.close() }
        let before = Wire.zeroCopyFramesInFlight.frames
        XCTAssertFalse(try push.send([.tensor(Tensor(zeros: [100_000]))], mode: .dontWait))
        XCTAssertEqual(Wire.zeroCopyFramesInFlight.frames, before)
    }

    func testForwardingAReceivedFrameSendsTheSameBytes() throws {
        let (a, b) = try pair("inproc://fwd-in")
        let (c, d) = try pair("inproc://fwd-out")
        defer { a.close(); b.close(); c.close(); d.close() }
        let bytes = (0..<200_000).map { UInt8($0 % 251) }
        try a.send([.bytes([9]), .bytes(bytes)])
        let got = try XCTUnwrap(try b.receive())
        try c.send(got.map { OutboundFrame.frame($0) })
        let out = try XCTUnwrap(try d.receive())
        XCTAssertEqual(out.map(\.bytes), [[9], bytes])
    }

    func testReceiveTimeoutReturnsNilAndPollSeesReadiness() throws {
        let (push, pull) = try pair("inproc://poll")
        defer { push.close(); pull.close() }
        try pull.set(.receiveTimeout(milliseconds: 20))
        XCTAssertNil(try pull.receive())
        XCTAssertEqual(try pull.poll(.readable, timeoutMilliseconds: 0), [])
        try push.send(bytes: [1, 2, 3])
        XCTAssertEqual(try pull.poll(.readable, timeoutMilliseconds: 2000), .readable)
        let ready = try ZMQSocket.poll([(pull, .readable), (push, .writable)], timeoutMilliseconds: 0)
        XCTAssertEqual(ready, [.readable, .writable])
        XCTAssertEqual(try pull.receive()?.map(\.bytes), [[1, 2, 3]])
    }

    func testContextShutdownWakesBlockedReceiverWithTerminated() throws {
        let pull = try ZMQSocket(context: context, type: .pull)
        try pull.bind("inproc://term")
        let done = expectation(description: "receiver woke")
        final class Box { var error: Error? }
        let box = Box()
        let t = Thread {
            do { _ = try pull.receive() } catch { box.error = error }
            pull.close()
            done.fulfill()
        }
        t.start()
        usleep(50_000)
        context.shutdown()
        wait(for: [done], timeout: 10)
        let caught = box.error
        XCTAssertEqual((caught as? ZMQError)?.code, .terminated, "\(String(describing: caught))")
        XCTAssertTrue((caught as? ZMQError)?.isTerminated ?? false)
    }

    func testOptionsAreApplied() throws {
        let s = try ZMQSocket(context: context, type: .push)
        defer { s.close() }
        try s.set([.sendHighWaterMark(3), .receiveHighWaterMark(5), .linger(milliseconds: 7)])
        XCTAssertEqual(try s.intOption(ZMQSocketOption.sendHighWaterMarkOption), 3)
        XCTAssertEqual(try s.intOption(ZMQSocketOption.receiveHighWaterMarkOption), 5)
        XCTAssertEqual(try s.intOption(ZMQSocketOption.lingerOption), 7)
    }
}
