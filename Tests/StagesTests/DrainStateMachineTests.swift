import Stages
import XCTest

final class DrainStateMachineTests: XCTestCase {
    func testKeepsReadingUntilEndOfStreamAndAllAnnouncedMessages() {
        var m = DrainStateMachine(idleTimeout: 1, drainTimeout: 10, now: 0)
        m.messageReceived(now: 0.1)
        XCTAssertEqual(m.tick(now: 0.2), .keepReading)
        // The marker overtakes two messages still in another replica's pipe.
        m.endOfStream(sent: 3, now: 0.3)
        XCTAssertEqual(m.tick(now: 0.4), .keepReading)
        m.messageReceived(now: 0.5)
        XCTAssertEqual(m.tick(now: 0.6), .keepReading)
        m.messageReceived(now: 0.7)
        XCTAssertEqual(m.tick(now: 0.7), .finish(lost: 0))
        // Finished is final.
        m.messageReceived(now: 0.8)
        XCTAssertEqual(m.tick(now: 5), .finish(lost: 0))
    }

    func testWaitsForEveryUpstreamGroup() {
        var m = DrainStateMachine(expectedEndOfStreams: 2, idleTimeout: 1, drainTimeout: 10, now: 0)
        m.endOfStream(sent: 0, now: 0)
        XCTAssertEqual(m.tick(now: 0.1), .keepReading)
        XCTAssertEqual(m.tick(now: 50), .keepReading, "no shutdown, one marker missing: keep waiting")
        m.endOfStream(sent: 0, now: 51)
        XCTAssertEqual(m.tick(now: 51), .finish(lost: 0))
    }

    func testMessagesThatNeverComeAreReportedLostAfterIdleTimeout() {
        var m = DrainStateMachine(idleTimeout: 1, drainTimeout: 10, now: 0)
        m.messageReceived(now: 0)
        m.endOfStream(sent: 4, now: 0.5)
        XCTAssertEqual(m.tick(now: 1.4), .keepReading)
        XCTAssertEqual(m.tick(now: 1.5), .finish(lost: 3))
    }

    func testShutdownWithoutMarkerStopsWhenInputIsQuiet() {
        var m = DrainStateMachine(idleTimeout: 1, drainTimeout: 10, now: 0)
        m.messageReceived(now: 5)
        XCTAssertEqual(m.tick(now: 7), .keepReading, "quiet input alone is not a reason to stop")
        m.shutdownRequested(now: 7)
        m.messageReceived(now: 7.5)
        XCTAssertEqual(m.tick(now: 8.0), .keepReading)
        XCTAssertEqual(m.tick(now: 8.5), .finish(lost: 0))
    }

    func testShutdownDrainTimeoutBoundsABusyInput() {
        var m = DrainStateMachine(idleTimeout: 1, drainTimeout: 3, now: 0)
        m.shutdownRequested(now: 0)
        for t in stride(from: 0.5, through: 2.5, by: 0.5) {
            m.messageReceived(now: t)
            XCTAssertEqual(m.tick(now: t), .keepReading)
        }
        m.messageReceived(now: 3)
        XCTAssertEqual(m.tick(now: 3), .finish(lost: 0))
    }
}
