import Imaging
import Kernels
import XCTest

final class NIfTIWriteTests: XCTestCase {
    /// An oblique affine (rotation about z, anisotropic spacing) survives the qform/sform round trip.
    let oblique = Affine(rows: [[0.8 * 0.9659258, -0.8 * 0.2588190, 0, -90.5],
                                [0.8 * 0.2588190, 0.8 * 0.9659258, 0, 12.25],
                                [0, 0, 2.5, -300], [0, 0, 0, 1]])

    func testFloatRoundTripNiiAndGz() throws {
        let dir = try TestData.temporaryDirectory(self)
        var t = Tensor(zeros: [5, 4, 3])
        for i in 0..<t.count { t[flat: i] = Float(i) * 1.25 - 20 }
        let v = Volume(voxels: t, affine: oblique)
        for name in ["a.nii", "a.nii.gz"] {
            let p = dir.appendingPathComponent(name).path
            try NIfTI.write(v, to: p)
            let h = try NIfTI.readHeader(p)
            XCTAssertEqual(h.datatype, .float32)
            XCTAssertEqual(h.dimensions, [5, 4, 3])
            XCTAssertEqual(h.qformCode, 1); XCTAssertEqual(h.sformCode, 2)
            for (a, b) in zip(h.pixdim, [0.8, 0.8, 2.5]) { XCTAssertEqual(a, b, accuracy: 1e-6) }
            let r = try NIfTI.readVolume(p)
            XCTAssertEqual(r.voxels.scalars, v.voxels.scalars)
            XCTAssertTrue(r.affine.isClose(to: oblique, tolerance: 1e-6), "\(r.affine)")
        }
    }

    /// The qform written alongside the sform describes the same geometry (checked by reading a
    /// copy whose sform_code we zero, so the reader falls back to the qform).
    func testQformMatchesSform() throws {
        let dir = try TestData.temporaryDirectory(self)
        let p = dir.appendingPathComponent("q.nii").path
        try NIfTI.write(Volume(voxels: Tensor(zeros: [3, 3, 3]), affine: oblique), to: p)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        bytes[254] = 0; bytes[255] = 0  // sform_code (int16 at offset 254 in the NIfTI-1 header)
        let q = dir.appendingPathComponent("q2.nii")
        try bytes.write(to: q)
        let h = try NIfTI.readHeader(q.path)
        XCTAssertEqual(h.sformCode, 0)
        XCTAssertTrue(h.affine.isClose(to: oblique, tolerance: 1e-5), "\(h.affine)")
    }

    func testExampleCTRoundTripAsInt16AndLabels() throws {
        try TestData.requireExampleData()
        let dir = try TestData.temporaryDirectory(self)
        let (ct, seg) = try NIfTI.readPair(ct: TestData.exampleCT, label: TestData.exampleSeg)
        let cp = dir.appendingPathComponent("ct.nii.gz").path, lp = dir.appendingPathComponent("seg.nii.gz").path
        try NIfTI.write(ct, to: cp, as: .int16)
        try NIfTI.write(seg, to: lp)
        XCTAssertEqual(try NIfTI.readHeader(cp).datatype, .int16)
        XCTAssertEqual(try NIfTI.readHeader(lp).datatype, .uint8)
        let (ct2, seg2) = try NIfTI.readPair(ct: cp, label: lp)
        XCTAssertEqual(ct2.voxels.scalars, ct.voxels.scalars)
        XCTAssertEqual(seg2.labels, seg.labels)
        XCTAssertTrue(ct2.affine.isClose(to: ct.affine, tolerance: 1e-6))
    }

    func testScalingIsApplied() throws {
        // Write int16, then set scl_slope = 0.5, scl_inter = -10 in the header bytes.
        let dir = try TestData.temporaryDirectory(self)
        let p = dir.appendingPathComponent("s.nii").path
        try NIfTI.write(Volume(voxels: Tensor(shape: [2, 1, 1], data: [100, -40]), affine: .identity), to: p, as: .int16)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        withUnsafeBytes(of: Float(0.5).bitPattern.littleEndian) { bytes.replaceSubrange(112..<116, with: $0) }
        withUnsafeBytes(of: Float(-10).bitPattern.littleEndian) { bytes.replaceSubrange(116..<120, with: $0) }
        try bytes.write(to: URL(fileURLWithPath: p))
        let h = try NIfTI.readHeader(p)
        XCTAssertTrue(h.hasScaling)
        XCTAssertEqual(try NIfTI.readVolume(p).voxels.scalars, [40, -30])
    }

    func testWriteIntoMissingFolderFails() {
        let v = Volume(voxels: Tensor(zeros: [2, 2, 2]), affine: .identity)
        XCTAssertThrowsError(try NIfTI.write(v, to: "/nonexistent-dir-xyz/a.nii.gz")) { e in
            XCTAssertEqual((e as? ImagingError)?.code, .writeFailed)
        }
    }
}

import Foundation
