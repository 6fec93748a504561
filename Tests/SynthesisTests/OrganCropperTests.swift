import XCTest
import Kernels
import Imaging
import Synthesis

final class OrganCropperTests: XCTestCase {
    /// The retry schedule of STEP3: R, then R−5 after 5 tries, …, never below 5; any crop after 30.
    func testAcceptanceSchedule() {
        let v30 = OrganCropper.sphereVoxels(30), v25 = OrganCropper.sphereVoxels(25), v5 = OrganCropper.sphereVoxels(5)
        XCTAssertEqual(v30, 113_097, accuracy: 1)
        XCTAssertFalse(OrganCropper.accepts(attempt: 1, count: Int(v30), radius: 30))
        XCTAssertTrue(OrganCropper.accepts(attempt: 1, count: Int(v30) + 1, radius: 30))
        XCTAssertFalse(OrganCropper.accepts(attempt: 5, count: Int(v25) + 1, radius: 30))
        XCTAssertTrue(OrganCropper.accepts(attempt: 6, count: Int(v25) + 1, radius: 30))
        XCTAssertFalse(OrganCropper.accepts(attempt: 26, count: Int(v5), radius: 30))
        XCTAssertTrue(OrganCropper.accepts(attempt: 26, count: Int(v5) + 1, radius: 30))
        XCTAssertTrue(OrganCropper.accepts(attempt: 16, count: Int(v5) + 1, radius: 15))   // max(15−15, 5) = 5
        XCTAssertFalse(OrganCropper.accepts(attempt: 30, count: 0, radius: 30))
        XCTAssertTrue(OrganCropper.accepts(attempt: 31, count: 0, radius: 30))
    }

    /// A 160×140×120 volume with a liver-sized blob: healthy crops hold > 113,097 organ voxels
    /// (the blob is large enough that a crop centred on it passes at once), have 96³ shape,
    /// and the same seed gives the same crop.
    func testHealthyCropsHoldTheOrgan() throws {
        let size = GridSize(160, 140, 120)
        let organ = TestOrgans.ellipsoid(size: size, center: [90, 70, 60], radii: [50, 40, 35])
        let ct = TestOrgans.ct(for: organ)
        let cropper = OrganCropper(organ: .liver)
        var origins: [[Int]] = []
        for seed in 0..<UInt64(12) {
            var rng = SynthRandom(seed: seed)
            let p = try cropper.crop(ct: ct, label: organ, healthy: true, rng: &rng)
            XCTAssertEqual(p.ct.shape, [96, 96, 96])
            XCTAssertGreaterThan(Double(p.foregroundCount), OrganCropper.sphereVoxels(30))
            XCTAssertEqual(p.label.nonzeroCount, p.foregroundCount)
            // The crop is where it says it is.
            XCTAssertEqual(p.ct[flat: 0], ct[flat: size.index(p.origin[0], p.origin[1], p.origin[2])])
            origins.append(p.origin)
            var again = SynthRandom(seed: seed)
            XCTAssertEqual(try cropper.crop(ct: ct, label: organ, healthy: true, rng: &again).origin, p.origin)
        }
        XCTAssertGreaterThan(Set(origins).count, 6, "crops vary with the seed")
    }

    /// A prepared volume crops exactly like the one-shot call with the same seed.
    func testPreparedSourceCropsTheSame() throws {
        let size = GridSize(130, 110, 100)
        let organ = TestOrgans.ellipsoid(size: size, center: [60, 50, 50], radii: [30, 25, 20])
        let ct = TestOrgans.ct(for: organ)
        let cropper = OrganCropper(organ: .pancreas)
        let source = try cropper.prepare(ct: ct, label: organ)
        for seed in 0..<UInt64(5) {
            var a = SynthRandom(seed: seed), b = SynthRandom(seed: seed)
            let p = try cropper.crop(ct: ct, label: organ, healthy: true, rng: &a)
            let q = try cropper.crop(source, healthy: true, rng: &b)
            XCTAssertEqual(p.origin, q.origin)
            XCTAssertEqual(p.label, q.label)
            XCTAssertEqual(p.ct.scalars, q.ct.scalars)
        }
    }

    /// Padding to 96 is symmetric, CT with each line's minimum (numpy 'minimum'), labels 0.
    func testPaddingSmallVolume() throws {
        let size = GridSize(100, 50, 96)
        var v = [Float](repeating: 0.5, count: size.count)
        for x in 0..<size.x { for z in 0..<size.z { v[size.index(x, 10, z)] = 0.2 } }   // y-lines have min 0.2
        let organ = TestOrgans.ellipsoid(size: size, center: [50, 25, 48], radii: [30, 20, 30])
        let (pct, plab, before) = OrganCropper.padToPatch(ct: Tensor(shape: size.dims, data: v), label: organ, patch: 96)
        XCTAssertEqual(pct.shape, [100, 96, 96])
        XCTAssertEqual(before, [0, 23, 0])
        XCTAssertEqual(pct[flat: GridSize(100, 96, 96).index(5, 0, 5)], 0.2)
        XCTAssertEqual(plab.voxels[GridSize(100, 96, 96).index(50, 0, 48)], 0)
        var rng = SynthRandom(seed: 1)
        let p = try OrganCropper(organ: .kidney).crop(ct: Tensor(shape: size.dims, data: v), label: organ, healthy: true, rng: &rng)
        XCTAssertEqual(p.origin[1], -23)
    }

    func testMismatchedGridsAreAnError() {
        var rng = SynthRandom(seed: 1)
        XCTAssertThrowsError(try OrganCropper(organ: .liver).crop(ct: Tensor(zeros: [96, 96, 96]), label: MaskGrid(zeros: GridSize(96, 96, 95)),
                                                                  healthy: true, rng: &rng))
    }

    /// The decision: p = 0.5 only for healthy scans, early 0.8 (tiny/small 50/50), medium 0.1,
    /// large 0.1. Over 20,000 draws each share is within 4 σ of its probability.
    func testDecisionFrequencies() {
        var rng = SynthRandom(seed: 2024)
        let policy = SynthesisPolicy.reference
        var counts = [String: Int]()
        let n = 20_000
        for _ in 0..<n { counts[policy.decide(healthy: true, rng: &rng)?.rawValue ?? "none", default: 0] += 1 }
        func check(_ k: String, _ p: Double) {
            let sd = (Double(n) * p * (1 - p)).squareRoot()
            XCTAssertEqual(Double(counts[k] ?? 0), Double(n) * p, accuracy: 4 * sd, "\(k): \(counts)")
        }
        check("none", 0.5); check("tiny", 0.2); check("small", 0.2); check("medium", 0.05); check("large", 0.05)
        for _ in 0..<100 { XCTAssertNil(policy.decide(healthy: false, rng: &rng)) }
    }
}
