import Imaging
import Kernels
import Foundation
import XCTest

final class NIfTIReadTests: XCTestCase {
    func testExampleCTHeader() throws {
        try TestData.requireExampleData()
        let h = try NIfTI.readHeader(TestData.exampleCT)
        XCTAssertEqual(h.dimensions, [122, 101, 112])
        XCTAssertEqual(h.datatype, .int32)
        XCTAssertEqual(h.version, 1)
        XCTAssertEqual(h.sformCode, 2)
        XCTAssertEqual(h.orientation, "RAS")
        for (s, e) in zip(h.spacing, [3.0, 3.0, 3.0]) { XCTAssertEqual(s, e, accuracy: 1e-6) }
        // nibabel: affine translation (-177.95632935, 11.31900024, 94.30175781)
        XCTAssertEqual(h.affine[0, 3], -177.95632935, accuracy: 1e-4)
        XCTAssertEqual(h.affine[1, 3], 11.31900024, accuracy: 1e-4)
        XCTAssertEqual(h.affine[2, 3], 94.30175781, accuracy: 1e-4)
    }

    /// Element (i, j, k) must be nibabel's get_fdata()[i, j, k] (values read with nibabel).
    func testVoxelOrderMatchesNibabel() throws {
        try TestData.requireExampleData()
        let ct = try NIfTI.readVolume(TestData.exampleCT)
        XCTAssertEqual(ct.shape, [122, 101, 112])
        XCTAssertEqual(ct[10, 20, 30], -132)
        XCTAssertEqual(ct[60, 50, 40], -72)
        XCTAssertEqual(ct[121, 100, 111], -997)
        let v = ct.voxels.scalars
        XCTAssertEqual(v.min(), -1207)
        XCTAssertEqual(v.max(), 3382)
    }

    /// Done-when: liver (id 5) 1126 mL ± 1%, mean HU 44 ± 2.
    func testExampleLiverVolumeAndMeanHU() throws {
        try TestData.requireExampleData()
        let (ct, seg) = try NIfTI.readPair(ct: TestData.exampleCT, label: TestData.exampleSeg)
        let stats = LabelStatistics.compute(ct: ct, labels: seg)
        let liver = try XCTUnwrap(stats.first { $0.id == OrganMap.totalSegmentator.id(of: .liver) })
        XCTAssertEqual(liver.millilitres, 1126, accuracy: 11.26)
        XCTAssertEqual(liver.meanHU, 44, accuracy: 2)
        // Cross-checked with nibabel: 1125.684 mL, 44.4596 HU; pancreas 18.765 mL, -6.354 HU.
        XCTAssertEqual(liver.millilitres, 1125.684, accuracy: 1e-3)
        let pancreas = try XCTUnwrap(stats.first { $0.id == 7 })
        XCTAssertEqual(pancreas.millilitres, 18.765, accuracy: 1e-3)
        XCTAssertEqual(pancreas.meanHU, -6.354, accuracy: 1e-2)
    }

    /// NIfTI-2 (.nii and .nii.gz) and big-endian NIfTI-1 fixtures from scripts/imaging_fixtures.py.
    func testNIfTI2AndBigEndianFixtures() throws {
        let dir = TestData.packageRoot.appendingPathComponent("Tests/Fixtures/imaging")
        let c = cos(Double.pi / 12), s = sin(Double.pi / 12)
        let affine = Affine(rows: [[0.8 * c, -0.8 * s, 0, -90.5], [0.8 * s, 0.8 * c, 0, 12.25], [0, 0, 2.5, -300], [0, 0, 0, 1]])
        for (name, version, type) in [("nifti2_float32.nii", 2, NIfTIDatatype.float32), ("nifti2_int16.nii.gz", 2, .int16),
                                      ("nifti1_bigendian_int16.nii", 1, .int16)] {
            let p = dir.appendingPathComponent(name).path
            let h = try NIfTI.readHeader(p)
            XCTAssertEqual(h.version, version, name)
            XCTAssertEqual(h.datatype, type, name)
            let v = try NIfTI.readVolume(p)
            XCTAssertEqual(v.shape, [4, 3, 2], name)
            XCTAssertTrue(v.affine.isClose(to: affine, tolerance: 1e-6), "\(name): \(v.affine)")
            for i in 0..<4 { for j in 0..<3 { for k in 0..<2 {
                XCTAssertEqual(v[i, j, k], Float(100 * i + 10 * j + k - 50), "\(name) at \(i),\(j),\(k)")
            }}}
        }
    }
}
