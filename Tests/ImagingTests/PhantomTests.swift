import Imaging
import Kernels
import XCTest

final class PhantomTests: XCTestCase {
    func testSameSeedSameVoxelsOtherSeedDiffers() {
        let shape = [64, 52, 52]
        let a = Phantom.generate(seed: 11, shape: shape), b = Phantom.generate(seed: 11, shape: shape)
        XCTAssertTrue(a.ct.voxels.scalars == b.ct.voxels.scalars)
        XCTAssertTrue(a.labels.labels == b.labels.labels)
        let c = Phantom.generate(seed: 12, shape: shape)
        XCTAssertFalse(a.ct.voxels.scalars == c.ct.voxels.scalars)
        XCTAssertFalse(a.labels.labels == c.labels.labels)
    }

    /// The default phantom: RAS 1 mm, every organ present with plausible HU, organs on the right side.
    func testDefaultPhantomAnatomy() {
        let (ct, labels) = Phantom.generate(seed: 3)
        XCTAssertEqual(ct.shape, Phantom.defaultShape)
        XCTAssertEqual(ct.orientation, "RAS")
        for s in ct.spacing { XCTAssertEqual(s, 1) }
        XCTAssertEqual(labels.affine, ct.affine)
        let stats = Dictionary(uniqueKeysWithValues: LabelStatistics.compute(ct: ct, labels: labels).map { ($0.id, $0) })
        XCTAssertEqual(Set(stats.keys), [0, 1, 2, 3, 5, 7])
        let expected: [(UInt8, Float, ClosedRange<Double>)] = [
            (5, Phantom.HU.liver, 200...600), (1, Phantom.HU.spleen, 25...120), (2, Phantom.HU.kidney, 12...60),
            (3, Phantom.HU.kidney, 12...60), (7, Phantom.HU.pancreas, 8...40),
        ]
        for (id, hu, ml) in expected {
            let s = stats[id]!
            XCTAssertEqual(s.meanHU, Double(hu), accuracy: 5, "label \(id)")
            XCTAssertGreaterThan(s.stdHU, 5, "label \(id) has texture")
            XCTAssertTrue(ml.contains(s.millilitres), "label \(id): \(s.millilitres) mL")
        }
        // Liver centroid on the patient's right (+x in RAS), spleen on the left.
        func centroidX(_ id: UInt8) -> Double {
            var sum = 0.0, n = 0.0
            for i in 0..<labels.shape[0] { for j in stride(from: 0, to: labels.shape[1], by: 2) {
                for k in stride(from: 0, to: labels.shape[2], by: 2) where labels[i, j, k] == id {
                    sum += ct.affine.apply([Double(i), 0, 0])[0]; n += 1
                }
            }}
            return sum / n
        }
        XCTAssertGreaterThan(centroidX(5), 10)
        XCTAssertLessThan(centroidX(1), -10)
        XCTAssertGreaterThan(centroidX(2), 10)  // kidney_right
        XCTAssertLessThan(centroidX(3), -10)
        // Air outside, bone in the spine.
        XCTAssertEqual(ct[0, 0, 0], -1000, accuracy: 30)
        let values = ct.voxels.scalars
        XCTAssertGreaterThan(values.max()!, 500)
    }

    func testPhantomRoundTripsThroughNIfTI() throws {
        let dir = try TestData.temporaryDirectory(self)
        let (ct, labels) = Phantom.generate(seed: 5, shape: [48, 40, 40])
        let cp = dir.appendingPathComponent("ct.nii.gz").path, lp = dir.appendingPathComponent("label.nii.gz").path
        try NIfTI.write(ct, to: cp, as: .int16)
        try NIfTI.write(labels, to: lp)
        let (ct2, labels2) = try NIfTI.readPair(ct: cp, label: lp)
        XCTAssertTrue(labels2.labels == labels.labels)
        XCTAssertTrue(ct2.voxels.scalars == ct.voxels.scalars.map { $0.rounded() })
        XCTAssertEqual(ct2.affine, ct.affine)
    }
}
