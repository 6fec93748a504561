import Imaging
import Kernels
import XCTest

final class HUWindowTests: XCTestCase {
    func testWindowIsTheReferenceOne() {
        XCTAssertEqual(Imaging.huWindow.lowerBound, -175)
        XCTAssertEqual(Imaging.huWindow.upperBound, 250)
    }

    func testWindowClipsAndScales() {
        let v = Volume(voxels: Tensor(shape: [1, 1, 6], data: [-1000, -175, 37.5, 250, 3000, 0]), affine: .identity)
        let w = v.windowed().voxels.scalars
        XCTAssertEqual(w[0], 0); XCTAssertEqual(w[1], 0)
        XCTAssertEqual(w[2], 0.5, accuracy: 1e-6)
        XCTAssertEqual(w[3], 1, accuracy: 1e-6); XCTAssertEqual(w[4], 1)
        XCTAssertEqual(w[5], 175 / 425, accuracy: 1e-6)
    }
}
