import Kernels
import Synthesis

/// Synthetic organ masks and CT patches for tests.
enum TestOrgans {
    /// A filled axis-aligned ellipsoid with semi-axes `r` centred at `c` in a grid of `size`.
    static func ellipsoid(size: GridSize, center c: [Double], radii r: [Double]) -> MaskGrid {
        var m = MaskGrid(zeros: size)
        for x in 0..<size.x { for y in 0..<size.y { for z in 0..<size.z {
            let dx = (Double(x) - c[0]) / r[0], dy = (Double(y) - c[1]) / r[1], dz = (Double(z) - c[2]) / r[2]
            if dx * dx + dy * dy + dz * dz <= 1 { m[x, y, z] = 1 }
        } } }
        return m
    }

    static let liver = ellipsoid(size: .patch, center: [48, 48, 48], radii: [40, 32, 26])
    static let kidney = ellipsoid(size: .patch, center: [48, 48, 48], radii: [16, 22, 30])
    static let pancreas = ellipsoid(size: .patch, center: [48, 48, 48], radii: [38, 10, 8])

    /// A smooth CT patch in [0,1]: organ ≈ 0.5 (HU ~ 37), elsewhere 0.3, plus a gentle gradient.
    static func ct(for organ: MaskGrid) -> Tensor {
        let s = organ.size
        var v = [Float](repeating: 0, count: s.count)
        for x in 0..<s.x { for y in 0..<s.y { for z in 0..<s.z {
            let i = s.index(x, y, z)
            v[i] = (organ.voxels[i] != 0 ? 0.5 : 0.3) + 0.001 * Float(z)
        } } }
        return Tensor(shape: s.dims, data: v)
    }
}
