import Foundation
import Imaging
import Kernels
import XCTest

final class DatasetManifestTests: XCTestCase {
    func testOrganMapParseAndText() throws {
        let m = try OrganMap.parse("liver=5, pancreas=7,kidney=2+3,spleen=1")
        XCTAssertEqual(m, .totalSegmentator)
        XCTAssertEqual(try OrganMap.parse(m.text), m)
        XCTAssertEqual(m.organ(of: 3), .kidney)
        XCTAssertEqual(m.allIDs(of: .kidney), [2, 3])
        XCTAssertThrowsError(try OrganMap.parse("lung=4"))
        XCTAssertThrowsError(try OrganMap.parse("liver=300"))
    }

    func testManifestWithMultiLabelAndAtlasCases() throws {
        let dir = try TestData.temporaryDirectory(self)
        let (ct, labels) = Phantom.generate(seed: 2, shape: [40, 32, 32])
        try NIfTI.write(ct, to: dir.appendingPathComponent("p_ct.nii.gz").path, as: .int16)
        try NIfTI.write(labels, to: dir.appendingPathComponent("p_seg.nii.gz").path)
        // AbdomenAtlas layout: CASE/ct.nii.gz, CASE/segmentations/<organ>.nii.gz (binary).
        let atlas = dir.appendingPathComponent("atlas/BDMAP_0001")
        try FileManager.default.createDirectory(at: atlas.appendingPathComponent("segmentations"), withIntermediateDirectories: true)
        try NIfTI.write(ct, to: atlas.appendingPathComponent("ct.nii.gz").path, as: .int16)
        for (file, id) in [("liver", 5), ("kidney_right", 2), ("kidney_left", 3), ("pancreas", 7)] {
            try NIfTI.write(labels.mask(of: [UInt8(id)]), to: atlas.appendingPathComponent("segmentations/\(file).nii.gz").path)
        }
        let text = """
        # name ct label organs status
        p1   p_ct.nii.gz   p_seg.nii.gz   liver=5,pancreas=7,kidney=2+3,spleen=1   healthy

        a1   atlas/BDMAP_0001  -  -  tumor   # AbdomenAtlas folder
        """
        let path = dir.appendingPathComponent("cases.txt").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let manifest = try DatasetManifest.read(path)
        XCTAssertEqual(manifest.cases.map(\.name), ["p1", "a1"])
        XCTAssertEqual(manifest.cases.map(\.healthy), [true, false])
        let (_, l1) = try manifest.cases[0].load()
        XCTAssertTrue(l1.labels == labels.labels)
        // The atlas case has no spleen file: the same labels with spleen removed.
        let (_, l2) = try manifest.cases[1].load()
        XCTAssertTrue(l2.labels == labels.labels.map { $0 == 1 ? 0 : $0 })
        // Written back and read again.
        try manifest.text.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try DatasetManifest.read(path).cases.count, 2)
        XCTAssertEqual(try AbdomenAtlas.scan(dir.appendingPathComponent("atlas").path).map(\.name), ["BDMAP_0001"])
    }

    func testBadManifestLinesNameTheLine() throws {
        let base = URL(fileURLWithPath: "/tmp")
        XCTAssertThrowsError(try DatasetManifest.parse("a b c\n", baseDirectory: base, source: "m.txt")) {
            XCTAssertTrue("\($0)".contains("m.txt line 1"), "\($0)")
        }
        XCTAssertThrowsError(try DatasetManifest.parse("\n\na ct.nii.gz seg.nii.gz - sick\n", baseDirectory: base, source: "m.txt")) {
            XCTAssertTrue("\($0)".contains("m.txt line 3") && "\($0)".contains("healthy or tumor"), "\($0)")
        }
        XCTAssertThrowsError(try DatasetManifest.read("/no/manifest.txt")) {
            XCTAssertEqual(($0 as? ImagingError)?.code, .missingFile)
        }
    }
}
