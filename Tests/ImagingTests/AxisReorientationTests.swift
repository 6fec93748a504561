import Imaging
import Kernels
import XCTest

final class AxisReorientationTests: XCTestCase {
    /// An LPI grid with permuted axes, reoriented to RAS, keeps each voxel at its world position.
    func testPermutedFlippedGridKeepsWorldPositions() {
        // voxel axis 0 runs along world -z (I), axis 1 along -x (L), axis 2 along -y (P).
        let a = Affine(rows: [[0, -2, 0, 50], [0, 0, -3, 40], [-1.5, 0, 0, 30], [0, 0, 0, 1]])
        XCTAssertEqual(a.orientationCode, "ILP")
        let shape = [4, 5, 6]
        var t = Tensor(zeros: shape)
        var l = LabelVolume(labels: [UInt8](repeating: 0, count: 120), shape: shape, affine: a)
        for i in 0..<4 { for j in 0..<5 { for k in 0..<6 {
            t[flat: (i * 5 + j) * 6 + k] = Float(100 * i + 10 * j + k)
            l[i, j, k] = UInt8(i * 30 + j * 6 + k)
        }}}
        let v = Volume(voxels: t, affine: a)
        let r = v.reoriented(to: "RAS")
        let rl = l.reoriented(to: "RAS")
        XCTAssertEqual(r.orientation, "RAS")
        XCTAssertEqual(r.shape, [5, 6, 4])
        XCTAssertEqual(rl.shape, [5, 6, 4])
        XCTAssertEqual(rl.affine, r.affine)
        // Every output voxel's world position maps back to the input voxel holding the same value.
        let inv = a.inverse!
        for x in 0..<5 { for y in 0..<6 { for z in 0..<4 {
            let w = r.affine.apply([Double(x), Double(y), Double(z)])
            let ijk = inv.apply(w).map { Int($0.rounded()) }
            XCTAssertEqual(r[x, y, z], v[ijk[0], ijk[1], ijk[2]])
            XCTAssertEqual(rl[x, y, z], l[ijk[0], ijk[1], ijk[2]])
        }}}
        for s in zip(r.spacing, [2.0, 3.0, 1.5]) { XCTAssertEqual(s.0, s.1, accuracy: 1e-12) }
    }

    func testRASIsUnchanged() throws {
        try TestData.requireExampleData()
        let ct = try NIfTI.readVolume(TestData.exampleCT)
        XCTAssertEqual(AxisReorientation(from: ct.affine).isIdentity, true)
        let r = ct.reoriented()
        XCTAssertEqual(r.affine, ct.affine)
        XCTAssertEqual(r.shape, ct.shape)
    }

    func testLPSRoundTrip() {
        let a = Affine.diagonal(spacing: [0.8, 0.8, 2.5], origin: [-100, -120, 30])
        var t = Tensor(zeros: [3, 4, 5])
        for i in 0..<60 { t[flat: i] = Float(i) }
        let v = Volume(voxels: t, affine: a)
        let lps = v.reoriented(to: "LPS")
        XCTAssertEqual(lps.orientation, "LPS")
        XCTAssertEqual(lps[0, 0, 0], v[2, 3, 0])
        let back = lps.reoriented(to: "RAS")
        XCTAssertEqual(back.voxels.scalars, v.voxels.scalars)
        XCTAssertTrue(back.affine.isClose(to: a, tolerance: 1e-12))
    }
}
