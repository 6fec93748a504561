import Foundation
import Imaging
import Kernels
import XCTest

final class EvalCommandTests: XCTestCase {
    func testEvalPrintsPerCaseAndMeanAndWritesCSV() throws {
        let dir = try SyntheticCase.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (ct, label, _) = try SyntheticCase.write(in: dir)
        let ckpt = dir.appendingPathComponent("ckpt")
        try SegmentationTrainer(config: TrainerConfig(unet: UNetConfig(channels: [4, 8], strides: [2], numResUnits: 1)))
            .saveCheckpoint(to: ckpt)
        let csv = dir.appendingPathComponent("eval.csv").path
        let r = try TumordBinary.run(["eval", "--model", ckpt.path, "--ct", ct, "--label", label, "--organ", "liver",
                                      "--roi", "32", "--csv", csv])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("organ DSC") && r.stdout.contains("mean"), r.stdout)
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[0], "case,organ_dsc,organ_nsd,tumor_dsc,tumor_nsd")
        let values = rows[1].split(separator: ",").dropFirst().map { Double($0) ?? .nan }
        XCTAssertEqual(values.count, 4)
        for v in values where !v.isNaN { XCTAssertTrue((0...1).contains(v), "\(rows[1])") }

        // The reference's organ pseudo-label masking (here the label itself stands in for the
        // pseudo-label): organ = pseudo-label, so organ DSC is high even for an untrained model.
        let pseudoCSV = dir.appendingPathComponent("eval-pseudo.csv").path
        let masked = try TumordBinary.run(["eval", "--model", ckpt.path, "--ct", ct, "--label", label, "--organ", "liver",
                                           "--roi", "32", "--csv", pseudoCSV, "--organ-pseudo", label])
        XCTAssertEqual(masked.status, 0, masked.stderr)
        let maskedRow = try String(contentsOfFile: pseudoCSV, encoding: .utf8).split(separator: "\n")[1]
        let maskedValues = maskedRow.split(separator: ",").dropFirst().map { Double($0) ?? .nan }
        XCTAssertGreaterThan(maskedValues[0], 0.5, "organ DSC with the pseudo-label: \(maskedRow)")
        let missing = try TumordBinary.run(["eval", "--model", ckpt.path, "--ct", ct, "--label", label,
                                            "--roi", "32", "--organ-pseudo", dir.appendingPathComponent("nope.nii.gz").path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("nope.nii.gz"), missing.stderr)

        let both = try TumordBinary.run(["eval", "--model", ckpt.path, "--ct", ct])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--manifest"), both.stderr)
    }
}
