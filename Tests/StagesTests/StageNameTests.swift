import XCTest
import Stages

final class StageNameTests: XCTestCase {
    func testSixStagesPlusWriter() { XCTAssertEqual(StageName.allCases.count, 7) }
}
