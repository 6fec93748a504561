import Dispatch
import Foundation
import Kernels
import ServiceLifecycle
import Stages
import Wire
import XCTest

/// The runtime over inproc sockets: counting, replicas, rejections, bad messages, backpressure,
/// taps, status and graceful shutdown.
final class StageRuntimeTests: XCTestCase {
    var context: ZMQContext!

    override func setUpWithError() throws { context = try ZMQContext() }
    override func tearDownWithError() throws { try context.close() }

    func services(_ specs: [StageSpec]) -> PipelineService {
        PipelineService(specs: specs, context: context, logger: TestGraph.logger())
    }

    /// Runs `body` on a fresh thread (ZeroMQ sockets stay on the thread that made them).
    func onThread<T>(_ body: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            Thread { c.resume(with: Result { try body() }) }.start()
        }
    }

    func testEveryPatchIsDeliveredOnceThroughReplicas() async throws {
        let collected = Collected()
        let s = services(TestGraph.chain(prefix: TestGraph.prefix(), count: 30, middleReplicas: 2,
                                         middle: { _ in PassThroughProcessor() }, sink: { _ in CollectingSink(collected) }))
        try await TestGraph.run(s)
        XCTAssertEqual(collected.patchIDs.sorted(), (0..<30).map(UInt64.init))
        XCTAssertEqual(collected.value(17), 17, "payload travels intact")
        XCTAssertEqual(collected.finishCount, 1, "the sink flushes once")
        XCTAssertEqual(s.stages[0].snapshot().emitted, 30)
        let middle = s.stages[1].counters.map { $0.snapshot() }
        XCTAssertEqual(middle.reduce(0) { $0 + $1.received }, 30)
        XCTAssertTrue(middle.allSatisfy { $0.received > 0 }, "PUSH round-robins over both replicas: \(middle.map(\.received))")
        XCTAssertEqual(s.stages[2].snapshot().emitted, 30)
        XCTAssertEqual(s.stages[2].group.lost, 0)
    }

    /// Replicas on both sides of an edge: every middle replica sends each sink replica its own
    /// end-of-stream marker, and each sink replica drains by itself (two markers each).
    func testReplicasOnBothSidesEachDrainByThemselves() async throws {
        let collected = Collected()
        let s = services(TestGraph.chain(prefix: TestGraph.prefix(), count: 40, middleReplicas: 2,
                                         middle: { _ in PassThroughProcessor() }, sink: { _ in CollectingSink(collected) },
                                         sinkReplicas: 2))
        try await TestGraph.run(s)
        XCTAssertEqual(collected.patchIDs.sorted(), (0..<40).map(UInt64.init))
        XCTAssertEqual(collected.finishCount, 2, "each sink replica flushes once")
        let sinks = s.stages[2].counters.map { $0.snapshot() }
        XCTAssertTrue(sinks.allSatisfy { $0.received > 0 && $0.rejected == 0 }, "\(sinks.map(\.received))")
        XCTAssertEqual(s.stages[2].group.lost, 0)
    }

    func testLoaderReplicasSplitTheWork() async throws {
        let collected = Collected()
        var specs = TestGraph.chain(prefix: TestGraph.prefix(), count: 21, middle: { _ in PassThroughProcessor() },
                                    sink: { _ in CollectingSink(collected) }, sinkReplicas: 1)
        specs[0].replicas = [0, 1, 2]
        specs[0].totalReplicas = 3
        specs[1].expectedEndOfStreams = 3  // one marker from each loader replica
        try await TestGraph.run(services(specs))
        XCTAssertEqual(collected.patchIDs.sorted(), (0..<21).map(UInt64.init))
    }

    func testRejectionsAreCountedWithTheirReason() async throws {
        let collected = Collected()
        let s = services(TestGraph.chain(prefix: TestGraph.prefix(), count: 30, middle: { _ in RejectingProcessor(every: 3) },
                                         sink: { _ in CollectingSink(collected) }))
        try await TestGraph.run(s)
        let middle = s.stages[1].snapshot()
        XCTAssertEqual(middle.rejected("test-reject"), 10)
        XCTAssertTrue(middle.lastError.contains("divisible by 3"), middle.lastError)
        XCTAssertEqual(collected.patchIDs.count, 20)
        // produced = delivered + rejected-with-reason
        XCTAssertEqual(s.stages[0].snapshot().emitted, UInt64(collected.patchIDs.count) + middle.rejectedPatches)
    }

    func testBadMessagesAreCountedAndSkipped() async throws {
        let collected = Collected()
        let prefix = TestGraph.prefix()
        let s = services(TestGraph.chain(prefix: prefix, count: 30, middle: { _ in PassThroughProcessor() },
                                         sink: { _ in CollectingSink(collected, delay: 0.01) }))
        let context = self.context!
        try await TestGraph.run(s) { _ in
            _ = try? await self.onThread {
                let push = try ZMQSocket(context: context, type: .push)
                defer { push.close(lingerMilliseconds: 1000) }
                try push.connect("\(prefix)/middle")
                try push.send(bytes: [0xFF, 0xFF, 0xFF, 0x01])                  // not a protobuf header
                try push.send(bytes: [0x08, 99])                                // schema_version 99
                var p = PatchMessage(patchID: 999)
                p.setPayload(Payload.ct, .float32(Tensor(zeros: [4, 4, 4])))
                try push.send(Array(p.encode().prefix(1)))                      // header without its payload
            }
        }
        let middle = s.stages[1].snapshot()
        XCTAssertEqual(middle.rejectedMessages, 3, "\(middle.rejectedByReason)")
        XCTAssertEqual(middle.rejected("wrong-version"), 1, "\(middle.rejectedByReason)")
        XCTAssertEqual(middle.rejected("truncated"), 1, "\(middle.rejectedByReason)")
        XCTAssertEqual(collected.patchIDs.sorted(), (0..<30).map(UInt64.init), "the stage kept running")
    }

    func testSlowSinkBlocksUpstreamAndBoundsTheQueues() async throws {
        let collected = Collected()
        let s = services(TestGraph.chain(prefix: TestGraph.prefix(), count: 40, middle: { _ in PassThroughProcessor() },
                                         sink: { _ in CollectingSink(collected, delay: 0.02) }, hwm: 1))
        let peakBox = Box<UInt64>(0)
        try await TestGraph.run(s) { _ in
            for _ in 0..<400 {
                let produced = s.stages[0].snapshot().emitted
                let consumed = UInt64(collected.patchIDs.count)
                peakBox.update { $0 = max($0, produced - consumed) }
                if s.stages[2].group.finished { break }
                try? await Task.sleep(nanoseconds: 10_000_000)
            }
        }
        let peak = peakBox.value
        // Two inproc edges of HWM 1+1, one patch in the middle stage, one in the sink.
        XCTAssertLessThanOrEqual(peak, 8, "patches between loader and sink never exceed the HWM bound")
        XCTAssertGreaterThan(s.stages[0].snapshot().blockedSeconds, 0.2, "the loader waited on the full queue")
        XCTAssertGreaterThan(s.stages[1].snapshot().blockedSeconds, 0.2, "the middle stage waited on the slow sink")
        XCTAssertEqual(collected.patchIDs, (0..<40).map(UInt64.init), "one path, order kept")
    }

    func testStalledTapSubscriberDoesNotSlowThePipeline() async throws {
        let collected = Collected()
        let prefix = TestGraph.prefix()
        let context = self.context!
        // A subscriber that connects and never reads.
        let sub = try await onThread { () -> ZMQSocket in
            let sub = try ZMQSocket(context: context, type: .sub)
            try sub.set([.subscribe([]), .receiveHighWaterMark(1)])
            try sub.connect("\(prefix)/tap")
            return sub
        }
        let s = services(TestGraph.chain(prefix: prefix, count: 200, middle: { _ in PassThroughProcessor() },
                                         sink: { _ in CollectingSink(collected) }, tap: "\(prefix)/tap"))
        try await TestGraph.run(s)
        XCTAssertEqual(collected.patchIDs.count, 200)
        XCTAssertLessThan(s.stages[1].snapshot().blockedSeconds, 1.0, "PUB drops for the stalled subscriber instead of blocking")
        try await onThread { sub.close() }
    }

    func testStatusRepliesWhileRunning() async throws {
        let collected = Collected()
        let prefix = TestGraph.prefix()
        let context = self.context!
        let s = services(TestGraph.chain(prefix: prefix, count: 20, middle: { _ in PassThroughProcessor() },
                                         sink: { _ in CollectingSink(collected, delay: 0.02) }, control: "\(prefix)/ctl"))
        let got = Box<StatusReply?>(nil)
        try await TestGraph.run(s) { _ in
            try? await Task.sleep(nanoseconds: 200_000_000)
            let answer = try? await self.onThread { () -> StatusReply? in
                let req = try ZMQSocket(context: context, type: .req)
                defer { req.close() }
                try req.set(.receiveTimeout(milliseconds: 3000))
                try req.connect("\(prefix)/ctl")
                try req.send(bytes: StatusRequest().encode())
                guard let frames = try req.receive() else { return nil }
                return try StatusReply.decode(frames[0].bytes)
            }
            got.update { $0 = answer ?? nil }
        }
        let r = try XCTUnwrap(got.value, "the control socket answered while the stage was blocked on a slow sink")
        XCTAssertEqual(r.stage, "cropper")
        XCTAssertGreaterThan(r.received, 0)
        XCTAssertTrue(r.counters.contains { $0.name == "passed_through" })
    }

    func testGracefulShutdownStopsTheSourceAndDrainsInFlight() async throws {
        let collected = Collected()
        let s = services(TestGraph.chain(prefix: TestGraph.prefix(), count: Int.max, middle: { _ in PassThroughProcessor() },
                                         sink: { _ in CollectingSink(collected, delay: 0.005) }, hwm: 2))
        try await TestGraph.run(s) { group in
            try? await Task.sleep(nanoseconds: 300_000_000)
            await group.triggerGracefulShutdown()
        }
        let produced = s.stages[0].snapshot().emitted
        XCTAssertGreaterThan(produced, 0)
        XCTAssertEqual(UInt64(collected.patchIDs.count), produced, "every patch the loader sent was delivered")
        XCTAssertEqual(collected.finishCount, 1, "the sink flushed")
        XCTAssertEqual(s.stages[2].group.lost, 0)
    }
}
