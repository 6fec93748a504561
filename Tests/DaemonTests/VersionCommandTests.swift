import XCTest

final class VersionCommandTests: XCTestCase {
    func testVersionPrintsLinkedLibraries() throws {
        let result = try TumordBinary.run(["version"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("libzmq 4."), result.stdout)
    }
}
