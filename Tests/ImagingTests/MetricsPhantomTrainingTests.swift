import XCTest
import Imaging
import Kernels

/// The short CI version of `tumorbench trainer-learn` (docs/trainer.md): training patches cropped
/// from a whole phantom as the reference's `RandCropByPosNegLabeld(pos=1, neg=1)` does (centre on
/// an organ voxel or on a background voxel inside the body with equal odds), half of the
/// organ-holding patches given a darker spherical tumor (the synthetic share), then held-out
/// validation on a whole unseen phantom with and without the organ pseudo-label masking.
final class MetricsPhantomTrainingTests: XCTestCase {
    static let shape = [64, 48, 48]

    func testPosNegPhantomRunLowersLossAndValidatesWholeScan() {
        let (hu, labels) = Phantom.generate(seed: 3, shape: Self.shape)
        let ct = hu.windowed().voxels.scalars
        let liver = labels.labels.map { $0 == 5 ? UInt8(1) : 0 }
        let foreground = liver.indices.filter { liver[$0] == 1 }
        let background = liver.indices.filter { liver[$0] == 0 && ct[$0] > 0 }
        XCTAssertFalse(foreground.isEmpty)
        XCTAssertFalse(background.isEmpty)

        let config = TrainerConfig(unet: UNetConfig(channels: [8, 16, 32], strides: [2, 2], numResUnits: 1),
                                   schedule: LRSchedule(baseLR: 3e-3, warmupSteps: 2, totalSteps: 200), seed: 1)
        let trainer = SegmentationTrainer(config: config)
        var rng = SplitMix64(seed: 9)
        var losses: [Float] = [], negatives = 0, synthetic = 0
        let steps = 40
        for _ in 0..<steps {
            let positive = rng.next() % 2 == 0
            if !positive { negatives += 1 }
            let centre = positive ? foreground[Int(rng.next() % UInt64(foreground.count))]
                                  : background[Int(rng.next() % UInt64(background.count))]
            var (patch, label) = Self.crop(ct: ct, label: liver, centre: centre, edge: 32)
            if label.contains(1), rng.next() % 2 == 0 {
                synthetic += 1
                Self.paintTumor(ct: &patch, label: &label, edge: 32, rng: &rng)
            }
            losses.append(trainer.step(batch: [TrainingSample(ct: Tensor(shape: [32, 32, 32], data: patch), label: label)]))
        }
        XCTAssertGreaterThan(negatives, 5)
        XCTAssertGreaterThan(synthetic, 3)
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.8 * first, "losses \(losses)")

        // Held-out: a whole unseen phantom with one tumor, sliding window at the patch size.
        let (heldHU, heldLabels) = Phantom.generate(seed: 4, shape: Self.shape)
        var heldCT = heldHU.windowed().voxels.scalars
        var heldLabel = heldLabels.labels.map { $0 == 5 ? UInt8(1) : 0 }
        let organ = heldLabel
        var tumorRNG = SplitMix64(seed: 2)
        Self.paintTumor(ct: &heldCT, label: &heldLabel, dims: Self.shape, rng: &tumorRNG)
        XCTAssertTrue(heldLabel.contains(2))
        let affine = heldHU.affine
        let cases = [(ct: Volume(voxels: Tensor(shape: Self.shape, data: heldCT), affine: affine),
                      label: LabelVolume(labels: heldLabel, shape: Self.shape, affine: affine))]
        let window = SlidingWindow(roiSize: [32, 32, 32], overlap: 0.5)
        let plain = trainer.validate(cases: cases, window: window)
        let masked = trainer.validate(cases: cases, window: window, organMasks: [organ])
        XCTAssertTrue((0...1).contains(plain.organDSC), "\(plain)")
        XCTAssertEqual(masked.organDSC, plain.organDSC, "masking must not touch the organ")
        // Masking only removes tumor false positives outside the organ (the tumor lies inside it).
        if !masked.tumorDSC.isNaN && !plain.tumorDSC.isNaN {
            XCTAssertGreaterThanOrEqual(masked.tumorDSC, plain.tumorDSC, "masked \(masked) plain \(plain)")
        }
    }

    func testMaskTumorKeepsOnlyTumorInsideTheOrgan() {
        var pred: [UInt8] = [0, 1, 2, 2, 2, 1]
        SegmentationMetrics.maskTumor(&pred, organ: [0, 1, 1, 0, 3, 0])
        XCTAssertEqual(pred, [0, 1, 2, 0, 2, 1])
    }

    /// A cube of `edge` centred on `centre` (flat index in `shape`), moved inside the volume.
    static func crop(ct: [Float], label: [UInt8], centre: Int, edge: Int) -> ([Float], [UInt8]) {
        let s = shape
        let c = [centre / (s[1] * s[2]), (centre / s[2]) % s[1], centre % s[2]]
        let start = (0..<3).map { min(max(c[$0] - edge / 2, 0), s[$0] - edge) }
        var outCT = [Float](repeating: 0, count: edge * edge * edge), outLabel = [UInt8](repeating: 0, count: edge * edge * edge)
        for x in 0..<edge { for y in 0..<edge { for z in 0..<edge {
            let src = ((start[0] + x) * s[1] + start[1] + y) * s[2] + start[2] + z, dst = (x * edge + y) * edge + z
            outCT[dst] = ct[src]; outLabel[dst] = label[src]
        }}}
        return (outCT, outLabel)
    }

    /// A sphere of radius 3–6 voxels around a random organ voxel, darker by 0.12, organ ∩ sphere → 2.
    static func paintTumor(ct: inout [Float], label: inout [UInt8], edge: Int, rng: inout SplitMix64) {
        paintTumor(ct: &ct, label: &label, dims: [edge, edge, edge], rng: &rng)
    }

    static func paintTumor(ct: inout [Float], label: inout [UInt8], dims d: [Int], rng: inout SplitMix64) {
        let organ = label.indices.filter { label[$0] == 1 }
        guard !organ.isEmpty else { return }
        let c = organ[Int(rng.next() % UInt64(organ.count))]
        let (cx, cy, cz) = (c / (d[1] * d[2]), (c / d[2]) % d[1], c % d[2])
        let r = 3 + Double(rng.next() % 4)
        for x in 0..<d[0] { for y in 0..<d[1] { for z in 0..<d[2] {
            let i = (x * d[1] + y) * d[2] + z
            let q = Double((x - cx) * (x - cx) + (y - cy) * (y - cy) + (z - cz) * (z - cz))
            if q <= r * r && label[i] == 1 { label[i] = 2; ct[i] = max(0, ct[i] - 0.12) }
        }}}
    }
}
