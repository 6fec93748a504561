import XCTest
import Kernels
import Imaging
import Synthesis

/// The blender against the golden fixture of the reference (`synth.*` of
/// ../shared/fixtures/difftumor/golden.safetensors).
final class BlenderTests: XCTestCase {
    static let path = SharedPaths.shared("fixtures/difftumor/golden.safetensors")

    func load() throws -> TestSafetensors {
        guard FileManager.default.fileExists(atPath: Self.path) else { throw XCTSkip("fixture missing: \(Self.path)") }
        return try TestSafetensors(path: Self.path)
    }

    func volume(_ f: TestSafetensors, _ key: String) throws -> Tensor {
        let (shape, values) = try f.floats(key)
        return Tensor(shape: Array(shape.suffix(3)), data: values)
    }

    func mask(_ t: Tensor) -> MaskGrid {
        MaskGrid(size: GridSize(t.shape[0], t.shape[1], t.shape[2]), voxels: t.scalars.map { $0 > 0.5 ? 1 : 0 })
    }

    func maxAbs(_ a: Tensor, _ b: Tensor, file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.shape, b.shape, file: file, line: line)
        return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? .infinity
    }

    func testReproducesFixtureOutputs() throws {
        let f = try load()
        let ct = try volume(f, "synth.ct")
        let organ = mask(try volume(f, "synth.organ"))
        let tumor = mask(try volume(f, "synth.tumor_mask"))
        let decoded = try f.floats("synth.sample_decoded")
        let sample = Blender.fromNetworkLayout(Tensor(shape: decoded.shape, data: decoded.values))
        let blurredRef = try f.floats("synth.mask_blurred_sigma2").values

        let blurred = Blender.blurMask(tumor, sigma: 2)
        XCTAssertLessThanOrEqual(zip(blurred, blurredRef).map { abs($0 - $1) }.max()!, 1e-6)

        let liver = Blender.alphaBlend(ct: ct, sample: sample, blurredMask: blurredRef)
        XCTAssertLessThanOrEqual(maxAbs(liver, try volume(f, "synth.output_liver")), 1e-5)
        let viaBlend = Blender.blend(ct: ct, organ: organ, tumor: tumor, sample: sample, organType: .liver, sigma: 2)
        XCTAssertLessThanOrEqual(maxAbs(viaBlend.ct, try volume(f, "synth.output_liver")), 1e-5)

        let pancreas = Blender.blend(ct: ct, organ: organ, tumor: tumor, sample: sample, organType: .pancreas, sigma: 2)
        XCTAssertLessThanOrEqual(maxAbs(pancreas.ct, try volume(f, "synth.output_pancreas")), 1e-5)
        // The pancreas path is not clamped: the fixture leaves [0, 1].
        XCTAssertLessThan(pancreas.ct.scalars.min()!, 0)
    }

    /// The fixture's tumor mask happens to be empty, so the liver case above only exercises
    /// (1 − m̃)·ct. This checks the blend where m̃ is not 0, against the formula evaluated by hand.
    func testAlphaBlendWithTumor() {
        let organ = TestOrgans.ellipsoid(size: GridSize(20, 20, 20), center: [10, 10, 10], radii: [8, 8, 8])
        let tumor = TestOrgans.ellipsoid(size: GridSize(20, 20, 20), center: [10, 10, 10], radii: [3, 3, 3])
        let ct = Tensor(shape: [20, 20, 20], repeating: 0.6)
        let sample = Tensor(shape: [20, 20, 20], repeating: -0.5)   // (−0.5 + 1)/2 = 0.25
        let (out, label) = Blender.blend(ct: ct, organ: organ, tumor: tumor, sample: sample, organType: .kidney, sigma: 1.5)
        let m = Blender.blurMask(tumor, sigma: 1.5)
        for i in [tumor.size.index(10, 10, 10), tumor.size.index(10, 10, 14), tumor.size.index(0, 0, 0)] {
            XCTAssertEqual(out[flat: i], (1 - m[i]) * 0.6 + m[i] * 0.25, accuracy: 1e-6)
        }
        XCTAssertLessThan(out[flat: tumor.size.index(10, 10, 10)], 0.4)   // m̃ ≈ 0.75 at the centre
        XCTAssertEqual(label[10, 10, 10], 2)
        XCTAssertEqual(label[10, 10, 17], 1)
        XCTAssertEqual(label[0, 0, 0], 0)
    }

    func testLayoutPermutationsInvert() {
        let t = Tensor(shape: [3, 4, 5], data: (0..<60).map(Float.init))
        let n = Blender.toNetworkLayout(t)
        XCTAssertEqual(n.shape, [5, 3, 4])
        XCTAssertEqual(n[flat: (2 * 3 + 1) * 4 + 3], t[flat: (1 * 4 + 3) * 5 + 2])   // n[z=2,x=1,y=3] = t[1,3,2]
        XCTAssertEqual(Blender.fromNetworkLayout(n).scalars, t.scalars)
    }
}
