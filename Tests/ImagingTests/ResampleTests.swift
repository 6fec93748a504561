import Imaging
import Kernels
import XCTest

final class ResampleTests: XCTestCase {
    /// Done-when: example_ct at 1 mm is 366×303×336 and keeps the liver volume within 1%.
    /// Probe values come from scripts/imaging_expected.py (scipy map_coordinates, order 1).
    func testExampleCTTo1mm() throws {
        try TestData.requireExampleData()
        let (ct, seg) = try NIfTI.readPair(ct: TestData.exampleCT, label: TestData.exampleSeg)
        let ct1 = ct.resampled(spacing: [1, 1, 1])
        let seg1 = seg.resampled(spacing: [1, 1, 1])
        XCTAssertEqual(ct1.shape, [366, 303, 336])
        XCTAssertEqual(seg1.shape, [366, 303, 336])
        for s in ct1.spacing { XCTAssertEqual(s, 1, accuracy: 1e-9) }
        XCTAssertTrue(ct1.affine.isClose(to: seg1.affine, tolerance: 1e-9))
        // Voxel 0 keeps its world position.
        for d in 0..<3 { XCTAssertEqual(ct1.affine.origin[d], ct.affine.origin[d], accuracy: 1e-9) }
        let probes: [([Int], Float)] = [([0, 0, 0], -1023), ([100, 150, 200], 43.888889), ([183, 151, 168], 120.666664),
                                        ([365, 302, 335], -997), ([200, 100, 50], -39.296295)]
        for (p, v) in probes { XCTAssertEqual(ct1[p[0], p[1], p[2]], v, accuracy: 1e-3, "at \(p)") }
        let liver3 = LabelStatistics.volumes(seg)[5]!
        let liver1 = LabelStatistics.volumes(seg1)[5]!
        XCTAssertEqual(liver1, liver3, accuracy: 0.01 * liver3)
        XCTAssertEqual(liver1, 1125.684, accuracy: 1e-3)  // scripts/imaging_expected.py
    }

    /// Trilinear interpolation reproduces a linear function of the index exactly (inside the grid).
    func testTrilinearIsExactOnLinearRamp() {
        let shape = [7, 5, 6]
        var t = Tensor(zeros: shape)
        for i in 0..<7 { for j in 0..<5 { for k in 0..<6 {
            t[flat: (i * 5 + j) * 6 + k] = Float(2 * i + 3 * j - k)
        }}}
        let v = Volume(voxels: t, affine: .diagonal(spacing: [2, 3, 1.5], origin: [10, -4, 7]))
        let r = v.resampled(spacing: [0.5, 1, 0.75])
        XCTAssertEqual(r.shape, [28, 15, 12])
        for a in 0..<25 { for b in 0..<13 { for c in 0..<11 {
            let (pi, pj, pk) = (Double(a) * 0.25, Double(b) / 3, Double(c) * 0.5)
            XCTAssertEqual(Double(r[a, b, c]), 2 * pi + 3 * pj - pk, accuracy: 1e-4)
        }}}
        // World position of an output voxel equals that of the input index it sampled.
        let w = r.affine.apply([8, 6, 4]), w0 = v.affine.apply([2, 2, 2])
        for d in 0..<3 { XCTAssertEqual(w[d], w0[d], accuracy: 1e-9) }
    }

    func testNearestKeepsLabelIDsAndBlockVolumes() {
        var l = LabelVolume(labels: [UInt8](repeating: 0, count: 10 * 10 * 10), shape: [10, 10, 10],
                            affine: .diagonal(spacing: [2, 2, 2]))
        // Interior block (at voxel 0 the output grid holds only half a cell when the ratio is 2).
        for i in 2..<6 { for j in 3..<7 { for k in 1..<9 { l[i, j, k] = 7 } } }
        l[9, 9, 9] = 200
        let r = l.resampled(spacing: [1, 1, 1])
        XCTAssertEqual(r.shape, [20, 20, 20])
        XCTAssertEqual(Set(r.labels), [0, 7, 200])
        let before = LabelStatistics.volumes(l), after = LabelStatistics.volumes(r)
        XCTAssertEqual(after[7]!, before[7]!, accuracy: 1e-9)
        XCTAssertEqual(after[200]!, before[200]!, accuracy: 1e-9)
    }

    func testIdentitySpacingIsANoOp() {
        var t = Tensor(zeros: [4, 3, 5])
        for i in 0..<t.count { t[flat: i] = Float(i * 7 % 11) }
        let v = Volume(voxels: t, affine: .diagonal(spacing: [1, 1, 1], origin: [1, 2, 3]))
        let r = v.resampled()
        XCTAssertEqual(r.shape, v.shape)
        XCTAssertEqual(r.voxels.scalars, v.voxels.scalars)
        XCTAssertEqual(r.affine, v.affine)
    }
}
