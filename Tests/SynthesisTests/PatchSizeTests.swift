import XCTest
import Synthesis

final class PatchSizeTests: XCTestCase {
    func testPatchIs96() { XCTAssertEqual(Synthesis.patchSize, 96) }
}
