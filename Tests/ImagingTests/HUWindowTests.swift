import XCTest
import Imaging

final class HUWindowTests: XCTestCase {
    func testWindowIsTheReferenceOne() {
        XCTAssertEqual(Imaging.huWindow.lowerBound, -175)
        XCTAssertEqual(Imaging.huWindow.upperBound, 250)
    }
}
