import XCTest
import Wire

final class ZMQVersionTests: XCTestCase {
    func testLinkedLibzmqIsVersion4() {
        XCTAssertTrue(Wire.zmqVersion.hasPrefix("4."), Wire.zmqVersion)
    }
}
