import Foundation
import XCTest
import Kernels

final class TrainingTests: XCTestCase {
    func testAdamWMatchesPyTorch() {
        var params = ["w": Tensor(shape: [5], data: [0.5, -1.0, 2.0, 0.0, 3.0])]
        var opt = AdamW(weightDecay: 0.1)
        for g in AdamWExpected.gradients { opt.update(parameters: &params, gradients: ["w": Tensor(shape: [5], data: g)], lr: 0.01) }
        assertClose(params["w"]!.scalars, AdamWExpected.result, atol: 1e-6)
        XCTAssertEqual(opt.step, 3)
    }

    func testWarmupCosineSchedule() {
        let s = LRSchedule(baseLR: 4e-4, warmupSteps: 3, totalSteps: 10)
        XCTAssertEqual(s.lr(step: 0), 0)
        XCTAssertEqual(s.lr(step: 1), 2e-4, accuracy: 1e-12)
        XCTAssertEqual(s.lr(step: 2), 4e-4, accuracy: 1e-12)
        XCTAssertEqual(s.lr(step: 3), 4e-4, accuracy: 1e-12)
        XCTAssertEqual(s.lr(step: 5), 0.5 * 4e-4 * (1 + cos(Double.pi * 2 / 7)), accuracy: 1e-12)
        XCTAssertEqual(s.lr(step: 10), 0, accuracy: 1e-12)
        XCTAssertEqual(s.lr(step: 50), 0, accuracy: 1e-12)
    }

    func testSlidingWindowStartsAndBlending() {
        XCTAssertEqual(SlidingWindow.starts(size: 200, roi: 96, overlap: 0.5), [0, 48, 96, 104])
        XCTAssertEqual(SlidingWindow.starts(size: 96, roi: 96, overlap: 0.5), [0])
        XCTAssertEqual(SlidingWindow.starts(size: 20, roi: 8, overlap: 0.25), [0, 6, 12])
        // A voxel-wise model: blending must give back exactly its voxel-wise output, also
        // across the zero padding of a volume smaller than the window on one axis.
        let vol = random([20, 6, 13], seed: 31)
        let sw = SlidingWindow(roiSize: [8, 8, 8], overlap: 0.5)
        let out = sw.infer(volume: vol, classes: 2) { w in
            let v = w.scalars
            return Tensor(shape: [1, 2] + Array(w.shape[2...]), data: v.map { 2 * $0 } + v.map { -$0 })
        }
        XCTAssertEqual(out.shape, [2, 20, 6, 13])
        assertClose(Array(out.scalars[0..<vol.count]), vol.scalars.map { 2 * $0 }, atol: 1e-5)
        XCTAssertEqual(SlidingWindow.argmax(out), vol.scalars.map { $0 > 0 ? 0 : 1 })
    }

    /// The Gaussian importance map against MONAI (scripts/importance_map_expected.py): the
    /// reference's MONAI 0.9 erf recipe (default) and MONAI ≥ 1.0's sampled form, on two small
    /// windows (one with the kernel truncated) and on points of the 96³ window.
    func testImportanceMapMatchesMONAI() {
        for c in SlidingWindowExpected.small {
            let sw = SlidingWindow(roiSize: c.roi, sigmaScale: c.sigmaScale)
            assertClose(sw.importanceMap(form: .erf), c.erf, atol: 1e-7, rtol: 2e-5, "erf \(c.roi)")
            assertClose(sw.importanceMap(form: .sampled), c.sampled, atol: 1e-7, rtol: 2e-5, "sampled \(c.roi)")
        }
        let sw = SlidingWindow()
        let erf = sw.importanceMap(), sampled = sw.importanceMap(form: .sampled)
        let idx = SlidingWindowExpected.points96.map { ($0[0] * 96 + $0[1]) * 96 + $0[2] }
        assertClose(idx.map { erf[$0] }, SlidingWindowExpected.erf96, atol: 1e-12, rtol: 2e-5, "erf 96")
        assertClose(idx.map { sampled[$0] }, SlidingWindowExpected.sampled96, atol: 1e-12, rtol: 2e-5, "sampled 96")
    }

    /// A short run on phantom-like patches (an organ ellipsoid with a darker spherical tumor,
    /// random placement and noise) lowers the DiceCE loss.
    func testShortTrainingRunLowersLoss() {
        let config = TrainerConfig(unet: UNetConfig(channels: [8, 16, 32], strides: [2, 2], numResUnits: 1),
                                   schedule: LRSchedule(baseLR: 3e-3, warmupSteps: 2, totalSteps: 200), seed: 1)
        let trainer = SegmentationTrainer(config: config)
        var rng = SplitMix64(seed: 5)
        var losses: [Float] = []
        for _ in 0..<40 { losses.append(trainer.step(batch: [phantomPatch(size: 24, rng: &rng)])) }
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.75 * first, "losses \(losses)")
        XCTAssertEqual(trainer.stepCount, 40)
    }

    /// Kill-and-restart at the API level: a trainer resumed from a checkpoint continues exactly
    /// as the uninterrupted one (same losses, same weights); a half-written checkpoint folder
    /// left by a kill is ignored.
    func testCheckpointResumeContinuesExactly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trainer-ckpt-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = TrainerConfig(unet: UNetConfig(channels: [4, 8], strides: [2], numResUnits: 1),
                                   schedule: LRSchedule(baseLR: 1e-3, warmupSteps: 2, totalSteps: 50), seed: 2)
        var rng = SplitMix64(seed: 9)
        let batches = (0..<5).map { _ in [phantomPatch(size: 16, rng: &rng)] }
        let a = try SegmentationTrainer.resumeOrStart(config: config, checkpointDirectory: dir)
        XCTAssertEqual(a.stepCount, 0)
        for b in batches.prefix(3) { a.step(batch: b) }
        try a.saveCheckpoint(to: dir)
        let continued = batches.suffix(2).map { a.step(batch: $0) }
        // A later save interrupted mid-write: only a temporary folder exists.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("step-00000005.tmp-1"), withIntermediateDirectories: true)

        let b = try SegmentationTrainer.resumeOrStart(config: config, checkpointDirectory: dir)
        XCTAssertEqual(b.stepCount, 3)
        let resumed = batches.suffix(2).map { b.step(batch: $0) }
        XCTAssertEqual(resumed, continued)
        for s in a.model.specs { XCTAssertEqual(a.model.parameters[s.name]!.scalars, b.model.parameters[s.name]!.scalars, s.name) }

        // A corrupt weights file is a clear error, not a crash.
        let latest = try String(contentsOf: dir.appendingPathComponent("latest"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try Data([1, 2, 3]).write(to: dir.appendingPathComponent(latest).appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try SegmentationTrainer(resumingFrom: dir)) { e in
            XCTAssertTrue("\(e)".contains("model.safetensors"), "\(e)")
        }
    }
}

/// A phantom-like patch: background, an organ ellipsoid (label 1) and a darker spherical tumor
/// inside it (label 2), at random positions, with noise; CT in [0, 1].
func phantomPatch(size n: Int, rng: inout SplitMix64) -> TrainingSample {
    func u(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * rng.nextUnit() }
    let c = (u(0.4, 0.6) * Double(n), u(0.4, 0.6) * Double(n), u(0.4, 0.6) * Double(n))
    let r = (u(0.25, 0.35) * Double(n), u(0.25, 0.35) * Double(n), u(0.25, 0.35) * Double(n))
    let t = (c.0 + u(-0.1, 0.1) * Double(n), c.1 + u(-0.1, 0.1) * Double(n), c.2 + u(-0.1, 0.1) * Double(n))
    let tr = u(0.08, 0.14) * Double(n)
    var ct = [Float](repeating: 0, count: n * n * n), label = [UInt8](repeating: 0, count: n * n * n)
    for d in 0..<n { for h in 0..<n { for w in 0..<n {
        let i = (d * n + h) * n + w
        let (x, y, z) = (Double(d), Double(h), Double(w))
        let inOrgan = pow((x - c.0) / r.0, 2) + pow((y - c.1) / r.1, 2) + pow((z - c.2) / r.2, 2) <= 1
        let inTumor = inOrgan && pow(x - t.0, 2) + pow(y - t.1, 2) + pow(z - t.2, 2) <= tr * tr
        var v = 0.25
        if inOrgan { v = 0.6; label[i] = 1 }
        if inTumor { v = 0.42; label[i] = 2 }
        ct[i] = Float(min(1, max(0, v + u(-0.08, 0.08))))
    }}}
    return TrainingSample(ct: Tensor(shape: [1, n, n, n], data: ct), label: label)
}
