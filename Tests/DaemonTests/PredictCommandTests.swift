import Foundation
import Imaging
import Kernels
import XCTest

/// `tumord predict` end to end on a small synthetic CT with small models.
final class PredictCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try SyntheticCase.makeDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func testPredictWritesLabelsOnTheInputGrid() throws {
        let (ct, _, truth) = try SyntheticCase.write(in: dir)
        let ckpt = dir.appendingPathComponent("ckpt")
        let trainer = SegmentationTrainer(config: TrainerConfig(unet: UNetConfig(channels: [4, 8], strides: [2], numResUnits: 1)))
        try trainer.saveCheckpoint(to: ckpt)
        let out = dir.appendingPathComponent("pred.nii.gz").path
        let r = try TumordBinary.run(["predict", "--model", ckpt.path, "--ct", ct, "--out", out, "--roi", "32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pred = try NIfTI.readLabels(out)
        XCTAssertEqual(pred.shape, truth.shape)
        XCTAssertTrue(pred.affine.isClose(to: truth.affine, tolerance: 1e-4), "\(pred.affine)")
        XCTAssertTrue(pred.labels.allSatisfy { $0 <= 2 })
    }

    /// A MONAI checkpoint (torch.save of {"state_dict": …}) loads unchanged into predict.
    func testPredictLoadsMONAICheckpoint() throws {
        let (ct, _, _) = try SyntheticCase.write(in: dir)
        let out = dir.appendingPathComponent("pred.nii.gz").path
        let r = try TumordBinary.run(["predict", "--model", SyntheticCase.monaiFixture, "--ct", ct, "--out", out, "--roi", "32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try NIfTI.readLabels(out).shape, [40, 36, 30])
    }

    func testBadInputsGiveClearErrors() throws {
        let (ct, _, _) = try SyntheticCase.write(in: dir)
        let missing = try TumordBinary.run(["predict", "--model", dir.appendingPathComponent("nope").path, "--ct", ct, "--out", "x.nii.gz"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("does not exist"), missing.stderr)
        let junk = dir.appendingPathComponent("junk.pt")
        try Data("not a checkpoint".utf8).write(to: junk)
        let bad = try TumordBinary.run(["predict", "--model", junk.path, "--ct", ct, "--out", "x.nii.gz"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("junk.pt"), bad.stderr)
    }
}

/// A small synthetic case written as NIfTI in a temporary folder.
enum SyntheticCase {
    static var monaiFixture: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/trainer/small_monai_unet.pt").path
    }

    static func makeDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tumord-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A 40×36×30 CT at 1.5×1.5×2 mm (LPS-flipped affine) with an organ ellipsoid and a tumor.
    static func write(in dir: URL) throws -> (ct: String, label: String, truth: LabelVolume) {
        let shape = [40, 36, 30]
        let affine = Affine(rows: [[-1.5, 0, 0, 30], [0, -1.5, 0, 20], [0, 0, 2, -10], [0, 0, 0, 1]])
        var hu = [Float](repeating: -100, count: shape.reduce(1, *)), labels = [UInt8](repeating: 0, count: hu.count)
        for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<shape[2] {
            let idx = (i * shape[1] + j) * shape[2] + k
            let x = Double(i) - 20, y = Double(j) - 18, z = Double(k) - 15
            let organ: Double = x * x / 144 + y * y / 100 + z * z / 64
            let tumor: Double = (x - 3) * (x - 3) + y * y + z * z
            if organ <= 1 { hu[idx] = 100; labels[idx] = 1 }
            if tumor <= 9 { hu[idx] = 40; labels[idx] = 2 }
        }}}
        let ct = dir.appendingPathComponent("ct.nii.gz").path, label = dir.appendingPathComponent("label.nii.gz").path
        try NIfTI.write(Volume(voxels: Tensor(shape: shape, data: hu), affine: affine), to: ct)
        let truth = LabelVolume(labels: labels, shape: shape, affine: affine)
        try NIfTI.write(truth, to: label)
        return (ct, label, truth)
    }
}
