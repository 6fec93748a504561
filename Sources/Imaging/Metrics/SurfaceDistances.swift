import Foundation

/// Surface distances between a ground-truth mask and a predicted mask, with DeepMind's
/// `surface-distance` semantics (`compute_surface_distances`): surface elements ("surfels") sit
/// on the corners of the voxel grid, each corner's 2×2×2 neighbour code gives its surfel area
/// from the marching-cubes table scaled by the spacing, and the distance of a surfel is the
/// Euclidean distance in mm to the nearest surfel corner of the other mask.
///
/// Masks are [X, Y, Z] in C order (z fastest), Imaging's `LabelVolume` layout, like the
/// nibabel arrays the reference passes; `spacingMM` is (x, y, z).
public struct SurfaceDistances {
    /// Distance in mm from each ground-truth surfel to the prediction's surface (∞ if it has none).
    public private(set) var distancesLabelToPrediction: [Double] = []
    public private(set) var distancesPredictionToLabel: [Double] = []
    public private(set) var surfelAreasLabel: [Double] = []
    public private(set) var surfelAreasPrediction: [Double] = []

    public init(label: [Bool], prediction: [Bool], dims: [Int], spacingMM: [Double]) {
        precondition(dims.count == 3 && spacingMM.count == 3, "3-D masks need 3 dims and 3 spacings, got \(dims), \(spacingMM)")
        let n = dims[0] * dims[1] * dims[2]
        precondition(label.count == n && prediction.count == n,
                     "mask sizes \(label.count), \(prediction.count) do not match dims \(dims)")
        // Bounding box of the union; corners run from bbox.min to bbox.max + 1 on each axis.
        var lo = dims, hi = [-1, -1, -1]
        for z in 0..<dims[2] { for y in 0..<dims[1] { for x in 0..<dims[0] {
            let i = (x * dims[1] + y) * dims[2] + z
            if label[i] || prediction[i] {
                lo[0] = min(lo[0], x); hi[0] = max(hi[0], x)
                lo[1] = min(lo[1], y); hi[1] = max(hi[1], y)
                lo[2] = min(lo[2], z); hi[2] = max(hi[2], z)
            }
        }}}
        if hi[0] < 0 { return }
        let e = (0..<3).map { hi[$0] - lo[$0] + 2 }  // corner grid extent
        let areaTable = SurfaceDistances.areaTable(spacingMM: spacingMM)

        func codes(_ mask: [Bool]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: e[0] * e[1] * e[2])
            func at(_ x: Int, _ y: Int, _ z: Int) -> Bool {
                // Voxels outside the bounding box are empty in both masks (DeepMind crops to it).
                guard x >= lo[0], x <= hi[0], y >= lo[1], y <= hi[1], z >= lo[2], z <= hi[2] else { return false }
                return mask[(x * dims[1] + y) * dims[2] + z]
            }
            for cz in 0..<e[2] { for cy in 0..<e[1] { for cx in 0..<e[0] {
                let x = lo[0] + cx, y = lo[1] + cy, z = lo[2] + cz
                var code = 0
                for i in 0..<2 { for j in 0..<2 { for k in 0..<2 where at(x - 1 + i, y - 1 + j, z - 1 + k) {
                    code |= 1 << (7 - (4 * i + 2 * j + k))
                }}}
                out[cx + e[0] * (cy + e[1] * cz)] = UInt8(code)
            }}}
            return out
        }
        let codeLabel = codes(label), codePrediction = codes(prediction)
        let borderLabel = codeLabel.map { $0 != 0 && $0 != 255 }
        let borderPrediction = codePrediction.map { $0 != 0 && $0 != 255 }
        let distToLabel = SurfaceDistances.distanceTransform(borders: borderLabel, extent: e, spacingMM: spacingMM)
        let distToPrediction = SurfaceDistances.distanceTransform(borders: borderPrediction, extent: e, spacingMM: spacingMM)
        for i in 0..<codeLabel.count {
            if borderLabel[i] {
                distancesLabelToPrediction.append(distToPrediction[i])
                surfelAreasLabel.append(areaTable[Int(codeLabel[i])])
            }
            if borderPrediction[i] {
                distancesPredictionToLabel.append(distToLabel[i])
                surfelAreasPrediction.append(areaTable[Int(codePrediction[i])])
            }
        }
    }

    /// Surface Dice (NSD) at `toleranceMM`: the area of both surfaces within the tolerance of the
    /// other, over the total area. NaN when both masks are empty (0/0), as in DeepMind's code.
    public func surfaceDice(toleranceMM: Double) -> Double {
        var overlap = 0.0, total = 0.0
        for (d, a) in zip(distancesLabelToPrediction, surfelAreasLabel) { total += a; if d <= toleranceMM { overlap += a } }
        for (d, a) in zip(distancesPredictionToLabel, surfelAreasPrediction) { total += a; if d <= toleranceMM { overlap += a } }
        return overlap / total
    }

    /// Surfel area per neighbour code at this spacing: the summed lengths of the normals scaled
    /// by the areas of the faces they are perpendicular to.
    static func areaTable(spacingMM s: [Double]) -> [Double] {
        SurfelNormals.table.map { normals in
            var area = 0.0
            for k in stride(from: 0, to: normals.count, by: 3) {
                let a = normals[k] * s[1] * s[2], b = normals[k + 1] * s[0] * s[2], c = normals[k + 2] * s[0] * s[1]
                area += (a * a + b * b + c * c).squareRoot()
            }
            return area
        }
    }

    /// Exact Euclidean distance (mm) from every corner to the nearest `true` corner, by the
    /// separable lower-envelope algorithm (Felzenszwalb & Huttenlocher) on squared distances.
    /// Returns ∞ everywhere when there is no border.
    static func distanceTransform(borders: [Bool], extent e: [Int], spacingMM: [Double]) -> [Double] {
        guard borders.contains(true) else { return [Double](repeating: .infinity, count: borders.count) }
        let big = 1e30
        var f = borders.map { $0 ? 0.0 : big }
        let strides = [1, e[0], e[0] * e[1]]
        let maxLen = e.max()!
        var line = [Double](repeating: 0, count: maxLen), out = line
        var v = [Int](repeating: 0, count: maxLen), zb = [Double](repeating: 0, count: maxLen + 1)
        for axis in 0..<3 {
            let len = e[axis], st = strides[axis], s = spacingMM[axis]
            let others = (0..<3).filter { $0 != axis }
            for b in 0..<e[others[1]] { for a in 0..<e[others[0]] {
                let base = a * strides[others[0]] + b * strides[others[1]]
                for q in 0..<len { line[q] = f[base + q * st] }
                // Lower envelope of parabolas (s·(q−p))² + line[p].
                var k = 0
                v[0] = 0; zb[0] = -.infinity; zb[1] = .infinity
                for q in 1..<max(len, 1) {
                    var sect = 0.0
                    while true {
                        let p = v[k]
                        let xq = s * Double(q), xp = s * Double(p)
                        sect = ((line[q] + xq * xq) - (line[p] + xp * xp)) / (2 * (xq - xp))
                        if sect <= zb[k] && k > 0 { k -= 1 } else { break }
                    }
                    k += 1; v[k] = q; zb[k] = sect; zb[k + 1] = .infinity
                }
                k = 0
                for q in 0..<len {
                    let xq = s * Double(q)
                    while zb[k + 1] < xq { k += 1 }
                    let d = xq - s * Double(v[k])
                    out[q] = d * d + line[v[k]]
                }
                for q in 0..<len { f[base + q * st] = out[q] }
            }}
        }
        return f.map { $0 >= big / 2 ? .infinity : $0.squareRoot() }
    }
}
