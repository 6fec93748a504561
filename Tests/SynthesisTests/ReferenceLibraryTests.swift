import XCTest
import Synthesis
import Kernels

/// Gaussian filter, ellipsoid and elastic deformation against values computed by scipy and
/// elasticdeform (scripts/synthesis_reference.py → ReferenceValues.swift).
final class ReferenceLibraryTests: XCTestCase {
    static func gridValues(_ dims: [Int]) -> [Float] {
        let n = dims.reduce(1, *)
        return (0..<n).map { Float(Double((Int64($0) * 2654435761) % 1000) / 1000.0) }
    }

    static func expand(runs: [Int], count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for k in stride(from: 0, to: runs.count, by: 2) { for i in runs[k]..<(runs[k] + runs[k + 1]) { out[i] = 1 } }
        return out
    }

    func testGaussianFilterMatchesScipy() {
        for c in ReferenceValues.gaussianCases {
            let size = GridSize(c.dims[0], c.dims[1], c.dims[2])
            let out = GaussianBlur.filter(Self.gridValues(c.dims), size: size, sigma: c.sigma)
            XCTAssertEqual(out.count, c.expected.count)
            let err = zip(out, c.expected).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(err, 2e-6, "sigma \(c.sigma) dims \(c.dims)")
        }
    }

    func testEllipsoidMatchesReference() {
        for c in ReferenceValues.ellipsoidCases {
            let e = MaskGrid.ellipsoid(c.radii[0], c.radii[1], c.radii[2])
            XCTAssertEqual(e.size.dims, c.radii.map { 4 * $0 })
            XCTAssertEqual(e.voxels, Self.expand(runs: c.setRuns, count: e.size.count), "radii \(c.radii)")
        }
    }

    func testElasticDeformMatchesElasticdeform() {
        for c in ReferenceValues.deformCases {
            let e = MaskGrid.ellipsoid(c.radii[0], c.radii[1], c.radii[2])
            let out = ElasticDeform.deformGrid(e, displacement: c.displacement, points: 3, axes: (c.axes[0], c.axes[1]))
            let expected = Self.expand(runs: c.setRuns, count: e.size.count)
            let mismatches = zip(out.voxels, expected).filter { $0 != $1 }.count
            XCTAssertEqual(mismatches, 0, "radii \(c.radii) axes \(c.axes): \(mismatches) voxels differ")
            XCTAssertNotEqual(out.voxels, e.voxels, "the deformation must change the mask")
        }
    }
}
