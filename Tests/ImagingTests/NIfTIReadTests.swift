import Imaging
import Kernels
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
}
