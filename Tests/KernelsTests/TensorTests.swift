import XCTest
import Kernels

final class TensorTests: XCTestCase {
    func testCopyOnWriteKeepsTheOriginal() {
        let a = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        var b = a
        b[flat: 0] = 42
        XCTAssertEqual(a[flat: 0], 1)
        XCTAssertEqual(b[flat: 0], 42)
        XCTAssertEqual(b.reshaped([3, 2]).shape, [3, 2])
    }
}
