import Foundation
import Imaging
import Kernels
import XCTest

final class MetricsCommandTests: XCTestCase {
    func testMetricsOfTwoLabelFiles() throws {
        let dir = try SyntheticCase.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, label, truth) = try SyntheticCase.write(in: dir)
        // Prediction: the organ class shifted by one voxel (1.5 mm) along x, no tumor.
        var shifted = [UInt8](repeating: 0, count: truth.labels.count)
        let s = truth.shape
        for i in 1..<s[0] { for j in 0..<s[1] { for k in 0..<s[2] {
            let from: Int = ((i - 1) * s[1] + j) * s[2] + k
            if truth.labels[from] == 1 { shifted[(i * s[1] + j) * s[2] + k] = 1 }
        }}}
        let pred = dir.appendingPathComponent("pred.nii.gz").path
        try NIfTI.write(LabelVolume(labels: shifted, shape: s, affine: truth.affine), to: pred)
        let r = try TumordBinary.run(["metrics", "--pred", pred, "--label", label])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, r.stdout)
        let organ = lines[1].split(separator: "\t"), tumor = lines[2].split(separator: "\t")
        let expected = SegmentationMetrics.evaluate(label: truth.labels, prediction: shifted,
                                                    dims: s, spacingMM: truth.spacing)
        XCTAssertEqual(Double(organ[1])!, expected[0].dsc, accuracy: 1e-4)
        XCTAssertEqual(Double(organ[2])!, expected[0].nsd, accuracy: 1e-4)
        XCTAssertLessThan(expected[0].dsc, 1)
        XCTAssertEqual(expected[0].nsd, 1, accuracy: 1e-9)  // a 1.5 mm shift is within 2 mm
        XCTAssertEqual(String(tumor[1]), "0.0000")

        let r2 = try TumordBinary.run(["metrics", "--pred", pred, "--label", dir.appendingPathComponent("missing.nii.gz").path])
        XCTAssertNotEqual(r2.status, 0)
        XCTAssertTrue(r2.stderr.contains("missing.nii.gz"), r2.stderr)
    }
}
