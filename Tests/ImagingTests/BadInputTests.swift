import Foundation
import Imaging
import Kernels
import XCTest

/// Each bad input gets an `ImagingError` with the right code that names the file; nothing crashes.
final class BadInputTests: XCTestCase {
    func assertImagingError(_ code: ImagingError.Code, path: String, mentions words: [String] = [],
                            file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? ImagingError else {
                return XCTFail("expected ImagingError, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(e.code, code, e.description, file: file, line: line)
            XCTAssertTrue(e.description.contains(path), "\(e.description) does not name \(path)", file: file, line: line)
            for w in words { XCTAssertTrue(e.description.contains(w), "\(e.description) lacks \(w)", file: file, line: line) }
        }
    }

    /// A small valid uint8 NIfTI-1 file to corrupt.
    func smallNii(_ dir: URL, _ name: String = "small.nii") throws -> (String, Data) {
        let p = dir.appendingPathComponent(name).path
        let l = LabelVolume(labels: (0..<60).map { UInt8($0) }, shape: [3, 4, 5], affine: .identity)
        try NIfTI.write(l, to: p)
        return (p, try Data(contentsOf: URL(fileURLWithPath: p)))
    }

    func setInt16(_ d: inout Data, _ offset: Int, _ v: Int16) {
        withUnsafeBytes(of: v.littleEndian) { d.replaceSubrange(offset..<(offset + 2), with: $0) }
    }

    func testMissingFile() {
        assertImagingError(.missingFile, path: "/no/such/ct.nii.gz") { _ = try NIfTI.readVolume("/no/such/ct.nii.gz") }
    }

    func testTruncatedGzip() throws {
        try TestData.requireExampleData()
        let dir = try TestData.temporaryDirectory(self)
        let data = try Data(contentsOf: URL(fileURLWithPath: TestData.exampleSeg))
        let p = dir.appendingPathComponent("cut.nii.gz").path
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: p))
        assertImagingError(.truncated, path: p) { _ = try NIfTI.readLabels(p) }
        // Cut inside the gzip header too.
        try data.prefix(10).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try NIfTI.readLabels(p)) { XCTAssertTrue("\($0)".contains(p)) }
    }

    func testTruncatedUncompressed() throws {
        let dir = try TestData.temporaryDirectory(self)
        let (p, d) = try smallNii(dir)
        try d.prefix(d.count - 7).write(to: URL(fileURLWithPath: p))
        assertImagingError(.truncated, path: p, mentions: ["bytes"]) { _ = try NIfTI.readLabels(p) }
    }

    func testNotNIfTI() throws {
        let dir = try TestData.temporaryDirectory(self)
        let p = dir.appendingPathComponent("notes.nii").path
        try String(repeating: "this is not an image\n", count: 40).write(toFile: p, atomically: true, encoding: .utf8)
        assertImagingError(.notNIfTI, path: p) { _ = try NIfTI.readVolume(p) }
        let q = dir.appendingPathComponent("image.png").path
        try Data([0x89, 0x50, 0x4e, 0x47]).write(to: URL(fileURLWithPath: q))
        assertImagingError(.notNIfTI, path: q) { _ = try NIfTI.readVolume(q) }
        let e = dir.appendingPathComponent("empty.nii.gz").path
        try Data().write(to: URL(fileURLWithPath: e))
        assertImagingError(.notNIfTI, path: e) { _ = try NIfTI.readVolume(e) }
    }

    func testUnsupportedDatatype() throws {
        let dir = try TestData.temporaryDirectory(self)
        var (p, d) = try smallNii(dir)
        setInt16(&d, 70, 32)  // DT_COMPLEX64
        setInt16(&d, 72, 64)  // bitpix
        try d.write(to: URL(fileURLWithPath: p))
        assertImagingError(.unsupportedDatatype, path: p, mentions: ["COMPLEX64"]) { _ = try NIfTI.readVolume(p) }
        setInt16(&d, 70, 128)  // DT_RGB24
        setInt16(&d, 72, 24)
        try d.write(to: URL(fileURLWithPath: p))
        assertImagingError(.unsupportedDatatype, path: p, mentions: ["RGB24"]) { _ = try NIfTI.readLabels(p) }
    }

    func testFourDimensionalWithSeveralVolumes() throws {
        let dir = try TestData.temporaryDirectory(self)
        var (p, d) = try smallNii(dir)
        setInt16(&d, 40, 4)  // dim[0]
        setInt16(&d, 48, 2)  // dim[4] = 2 volumes
        try d.write(to: URL(fileURLWithPath: p))
        assertImagingError(.multipleVolumes, path: p, mentions: ["2 volumes"]) { _ = try NIfTI.readVolume(p) }
        // A 4D file with a single volume is fine.
        setInt16(&d, 48, 1)
        try d.write(to: URL(fileURLWithPath: p))
        XCTAssertEqual(try NIfTI.readLabels(p).shape, [3, 4, 5])
    }

    func testAbsurdDimensionsAreRefused() throws {
        let dir = try TestData.temporaryDirectory(self)
        var (p, d) = try smallNii(dir)
        for o in [42, 44, 46] { setInt16(&d, o, 30000) }  // dim[1...3]
        try d.write(to: URL(fileURLWithPath: p))
        assertImagingError(.badGeometry, path: p, mentions: ["limit"]) { _ = try NIfTI.readLabels(p) }
    }

    func testGridMismatch() throws {
        let dir = try TestData.temporaryDirectory(self)
        let ctPath = dir.appendingPathComponent("ct.nii.gz").path
        try NIfTI.write(Volume(voxels: Tensor(zeros: [3, 4, 5]), affine: .identity), to: ctPath)
        let shapePath = dir.appendingPathComponent("shape.nii.gz").path
        try NIfTI.write(LabelVolume(labels: [UInt8](repeating: 0, count: 60), shape: [4, 3, 5], affine: .identity), to: shapePath)
        assertImagingError(.gridMismatch, path: shapePath, mentions: ["shape"]) {
            _ = try NIfTI.readPair(ct: ctPath, label: shapePath)
        }
        let affPath = dir.appendingPathComponent("shifted.nii.gz").path
        try NIfTI.write(LabelVolume(labels: [UInt8](repeating: 0, count: 60), shape: [3, 4, 5],
                                    affine: .diagonal(spacing: [1, 1, 1], origin: [0, 0, 2])), to: affPath)
        assertImagingError(.gridMismatch, path: affPath, mentions: ["affine"]) {
            _ = try NIfTI.readPair(ct: ctPath, label: affPath)
        }
    }

    func testNaNVoxels() throws {
        let dir = try TestData.temporaryDirectory(self)
        let p = dir.appendingPathComponent("nan.nii").path
        var t = Tensor(zeros: [2, 2, 2])
        t[flat: 3] = .nan
        t[flat: 5] = .infinity
        try NIfTI.write(Volume(voxels: t, affine: .identity), to: p)
        assertImagingError(.nanVoxels, path: p, mentions: ["2 of 8"]) { _ = try NIfTI.readVolume(p) }
    }

    func testNonIntegerLabels() throws {
        let dir = try TestData.temporaryDirectory(self)
        let p = dir.appendingPathComponent("lab.nii").path
        try NIfTI.write(Volume(voxels: Tensor(shape: [1, 1, 3], data: [0, 1.5, 300]), affine: .identity), to: p)
        assertImagingError(.badLabel, path: p, mentions: ["2 voxels"]) { _ = try NIfTI.readLabels(p) }
    }

    func testDirectoryAndWrongExtension() throws {
        let dir = try TestData.temporaryDirectory(self)
        assertImagingError(.notNIfTI, path: dir.path) { _ = try NIfTI.readVolume(dir.path) }
        let p = dir.appendingPathComponent("ct.img").path
        try Data(repeating: 0, count: 400).write(to: URL(fileURLWithPath: p))
        assertImagingError(.notNIfTI, path: p) { _ = try NIfTI.readVolume(p) }
    }
}
