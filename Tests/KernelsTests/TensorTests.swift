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

final class TypedTensorTests: XCTestCase {
    func testLabelsIndexAndConvert() {
        var labels = UInt8Tensor(shape: [1, 2, 3], repeating: 0)
        labels[0, 1, 2] = 2
        labels[0, 0, 1] = 1
        XCTAssertEqual(labels[flat: 5], 2)
        XCTAssertEqual(labels[flat: 1], 1)
        XCTAssertEqual(labels.count(of: 0), 4)
        let asFloat = Tensor(labels)
        XCTAssertEqual(asFloat.shape, [1, 2, 3])
        XCTAssertEqual(asFloat.scalars, [0, 1, 0, 0, 0, 2])
        XCTAssertEqual(UInt8Tensor(rounding: asFloat.affine(scale: 1, shift: 0.3)), labels)
        XCTAssertEqual(UInt8Tensor(rounding: Tensor(shape: [3], data: [-4, 300, 1.6])).scalars, [0, 255, 2])
        XCTAssertEqual(labels.mask(equalTo: 2).scalars, [0, 0, 0, 0, 0, 1])
        let wide: IntTensor = labels.converted()
        XCTAssertEqual(wide.scalars, [0, 1, 0, 0, 0, 2])
        XCTAssertEqual(labels.reshaped([6]).shape, [6])
        // Value semantics: a copy is independent.
        var copy = labels
        copy[flat: 0] = 7
        XCTAssertEqual(labels[flat: 0], 0)
    }

    func testOneHotAndArgmaxAreInverse() {
        let labels = UInt8Tensor(shape: [2, 2, 2], scalars: [0, 2, 1, 1, 2, 0, 0, 1])
        let hot = labels.oneHot(classes: 3)
        XCTAssertEqual(hot.shape, [2, 3, 2, 2])
        XCTAssertEqual(hot.scalars.reduce(0, +), 8)
        XCTAssertEqual(hot.argmax(axis: 1).scalars, labels.scalars.map(Int.init))
        // argmax over the last axis, first index on ties.
        let t = Tensor(shape: [2, 3], data: [1, 5, 5, -1, -3, -2])
        XCTAssertEqual(t.argmax(axis: 1), IntTensor(shape: [2], scalars: [1, 0]))
        XCTAssertEqual(t.argmax(axis: 0).scalars, [0, 0, 0])
    }
}
