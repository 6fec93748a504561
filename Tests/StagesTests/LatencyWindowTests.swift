import Stages
import XCTest

final class LatencyWindowTests: XCTestCase {
    func testSummaryOverRingAndLifetime() {
        var w = LatencyWindow(capacity: 4)
        for v in [1.0, 2.0, 3.0, 4.0, 100.0] { w.record(v) }
        XCTAssertEqual(w.count, 5)
        XCTAssertEqual(w.mean, 22, accuracy: 1e-12)
        XCTAssertEqual(w.maximum, 100)
        // The ring now holds 100, 2, 3, 4: p50 of the window.
        XCTAssertEqual(w.percentile(0), 2)
        XCTAssertEqual(w.percentile(100), 100)
        XCTAssertEqual(w.percentile(50), 4)
    }

    func testEmptyWindowIsZero() {
        let w = LatencyWindow()
        XCTAssertEqual(w.mean, 0)
        XCTAssertEqual(w.percentile(95), 0)
    }
}
