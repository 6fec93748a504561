import Stages
import Wire
import XCTest

final class StatusLineTests: XCTestCase {
    func snapshot(_ name: String, received: UInt64, emitted: UInt64, blocked: Double = 0,
                  rejected: [(name: String, value: UInt64)] = [], gauges: [(name: String, value: Double)] = []) -> StatusLine.Stage {
        StatusLine.Stage(name: name, snapshot: StageCounters.Snapshot(
            stage: name, replica: 0, received: received, emitted: emitted, rejectedByReason: rejected, inFlight: 0,
            uptimeSeconds: 10, busySeconds: 1, blockedSeconds: blocked, lastError: "", latency: LatencySummary(),
            counters: [], gauges: gauges, finished: false))
    }

    func testRatesBlockedShareQueueDepthAndLoss() {
        let before = [snapshot("loader", received: 10, emitted: 10), snapshot("trainer", received: 6, emitted: 6)]
        let now = [snapshot("loader", received: 30, emitted: 30, blocked: 1.0),
                   snapshot("trainer", received: 25, emitted: 24, rejected: [("nan-voxels", 1)], gauges: [("loss", 0.53125)])]
        let line = StatusLine.format(elapsed: 12, interval: 2, previous: before, current: now, queueDepths: true)
        XCTAssertEqual(line, "[   12.0s] loader 10.0/s blk 50% | trainer 9.0/s q5 rej 1 done 24 | loss 0.5313")
    }

    func testWholeGaugesPrintAsIntegers() {
        let now = [snapshot("trainer", received: 12, emitted: 12, gauges: [("step", 12), ("loss", 0.5), ("synthetic_share", 0.25)])]
        let line = StatusLine.format(elapsed: 12, interval: 2, previous: nil, current: now, queueDepths: false)
        XCTAssertTrue(line.hasSuffix(" | step 12 | loss 0.5000 | synthetic_share 0.2500"), line)
    }

    func testSnapshotSeparatesBadMessagesFromRejectedPatches() {
        let s = snapshot("x", received: 5, emitted: 3, rejected: [("malformed", 2), ("no-organ", 1), ("truncated", 1)])
        XCTAssertEqual(s.snapshot.rejected, 4)
        XCTAssertEqual(s.snapshot.rejectedMessages, 3)
        XCTAssertEqual(s.snapshot.rejectedPatches, 1)
        XCTAssertEqual(s.snapshot.statusReply.rejected, 4)
    }
}
