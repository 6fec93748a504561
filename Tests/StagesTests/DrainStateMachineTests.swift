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

    func testARepeatedMarkerFromOneSenderCountsOnce() {
        var m = DrainStateMachine(expectedEndOfStreams: 2, idleTimeout: 1, drainTimeout: 10, now: 0)
        m.endOfStream(sent: 0, from: "cropper/0", now: 0.1)
        m.endOfStream(sent: 0, from: "cropper/0", now: 0.2)
        XCTAssertEqual(m.tick(now: 0.3), .keepReading, "the second marker from cropper/0 is not cropper/1's")
        m.endOfStream(sent: 0, from: "cropper/1", now: 0.4)
        XCTAssertEqual(m.tick(now: 0.5), .finish(lost: 0))
    }

    func testRestoreTakesOverReceivedAndMarkers() {
        var m = DrainStateMachine(expectedEndOfStreams: 2, idleTimeout: 1, drainTimeout: 10, now: 0)
        m.restore(received: 7, markers: ["loader/0": 5], now: 0)
        m.messageReceived(now: 0.1)
        XCTAssertEqual(m.tick(now: 0.2), .keepReading)
        m.endOfStream(sent: 4, from: "loader/1", now: 0.3)
        XCTAssertEqual(m.tick(now: 0.4), .keepReading, "announced 9, received 8 across both processes: wait")
        XCTAssertEqual(m.tick(now: 1.4), .finish(lost: 1), "after the idle timeout the missing one is lost")
    }

    func testJournalLineRoundTripsAndCountsWhatWasInHand() {
        var j = JournalState()
        j.streamID = 123_456_789
        j.received = 10
        j.emitted = 7
        j.rejected = ["crop-failed": 1, "lost-in-transit": 0]
        j.sent = [4, 3]
        j.markers = ["cropper/0": 10]
        let bytes = j.encoded()
        XCTAssertEqual(bytes.count, 4096)
        XCTAssertEqual(JournalState.decode(String(decoding: bytes, as: UTF8.self)), j)
        XCTAssertEqual(j.inHand, 2)
        XCTAssertNil(JournalState.decode("tumord-journal v1 stream=x"), "a torn or foreign file is not trusted")
        XCTAssertNil(JournalState.decode(""))
    }
}
