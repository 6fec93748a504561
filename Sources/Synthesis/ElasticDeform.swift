/// Elastic grid deformation with the semantics of `elasticdeform.deform_random_grid`
/// (gvtulder/elasticdeform) as the reference calls it: `points` control points per deformed
/// axis spread from the first to the last voxel, Gaussian displacements with standard deviation
/// `sigma`, cubic B-spline interpolation of the displacement field (coefficients prefiltered
/// with mirror boundaries, like `scipy.ndimage.spline_filter1d`), order-0 (nearest) sampling of
/// the input and constant 0 outside it. Deforms two axes; the third is carried along.
public enum ElasticDeform {
    /// Draws the displacement grid `randn(2, points, points) * sigma` (C order) and applies it.
    public static func deformRandomGrid(_ input: MaskGrid, axes: (Int, Int), sigma: Double,
                                        points: Int = 3, rng: inout SynthRandom) -> MaskGrid {
        var displacement = [Double](repeating: 0, count: 2 * points * points)
        for i in displacement.indices { displacement[i] = rng.normal() * sigma }
        return deformGrid(input, displacement: displacement, points: points, axes: axes)
    }

    /// Applies a given displacement grid of shape (2, points, points) in C order: component 0
    /// displaces along `axes.0`, component 1 along `axes.1` (both in voxels).
    public static func deformGrid(_ input: MaskGrid, displacement: [Double], points: Int,
                                  axes: (Int, Int)) -> MaskGrid {
        guard let bbox = input.boundingBox else { return MaskGrid(zeros: input.size) }
        return deformGrid(input, displacement: displacement, points: points, axes: axes, nonzeroBox: bbox).mask
    }

    /// The same with the input's non-zero bounding box given (inclusive), so only output lines
    /// whose source falls in the box are visited and only the box's extent along the carried
    /// axis is copied; returns the output and its bounding box (nil when empty).
    static func deformGrid(_ input: MaskGrid, displacement: [Double], points: Int, axes: (Int, Int),
                           nonzeroBox box: (min: [Int], max: [Int])) -> (mask: MaskGrid, box: (min: [Int], max: [Int])?) {
        precondition(axes.0 < axes.1 && axes.0 >= 0 && axes.1 <= 2, "axes must be a sorted pair of 0...2, got \(axes)")
        precondition(displacement.count == 2 * points * points,
                     "displacement must have shape (2, \(points), \(points)), got \(displacement.count) values")
        let size = input.size
        let strides = [size.y * size.z, size.z, 1]
        let axisC = 3 - axes.0 - axes.1
        let na = size[axes.0], nb = size[axes.1]
        let sa = strides[axes.0], sb = strides[axes.1], sc = strides[axisC]
        var out = MaskGrid(zeros: size)
        if size.count == 0 { return (out, nil) }
        var outLo = [Int.max, Int.max, Int.max], outHi = [-1, -1, -1]

        // Prefilter: cubic B-spline coefficients along grid axis 1, then grid axis 2.
        var coeff = displacement
        for d in 0..<2 {
            for i in 0..<points {
                var row = (0..<points).map { coeff[(d * points + i) * points + $0] }
                row = mirrorCubicSplineCoefficients(row)
                for j in 0..<points { coeff[(d * points + i) * points + j] = row[j] }
            }
            for j in 0..<points {
                var col = (0..<points).map { coeff[(d * points + $0) * points + j] }
                col = mirrorCubicSplineCoefficients(col)
                for i in 0..<points { coeff[(d * points + i) * points + j] = col[i] }
            }
        }

        let tableA = SplineTable(outputCount: na, controlPoints: points)
        let tableB = SplineTable(outputCount: nb, controlPoints: points)

        input.voxels.withUnsafeBufferPointer { src in
            out.voxels.withUnsafeMutableBufferPointer { dst in
                for ia in 0..<na {
                    for ib in 0..<nb {
                        var displ = (0.0, 0.0)
                        for hh in 0..<2 {
                            var sum = 0.0
                            for l0 in 0..<4 {
                                let ga = tableA.index[ia * 4 + l0]
                                let wa = tableA.weight[ia * 4 + l0]
                                for l1 in 0..<4 {
                                    let gb = tableB.index[ib * 4 + l1]
                                    var c = coeff[(hh * points + ga) * points + gb]
                                    c *= wa
                                    c *= tableB.weight[ib * 4 + l1]
                                    sum += c
                                }
                            }
                            if hh == 0 { displ.0 = sum } else { displ.1 = sum }
                        }
                        let ca = Double(ia) + displ.0, cb = Double(ib) + displ.1
                        // Constant mode: coordinates outside [0, n-1] read cval = 0.
                        guard ca >= 0, ca <= Double(na - 1), cb >= 0, cb <= Double(nb - 1) else { continue }
                        let pa = Int((ca + 0.5).rounded(.down)), pb = Int((cb + 0.5).rounded(.down))
                        guard pa >= box.min[axes.0], pa <= box.max[axes.0], pb >= box.min[axes.1], pb <= box.max[axes.1] else { continue }
                        let from = pa * sa + pb * sb, to = ia * sa + ib * sb
                        var any = false
                        for ic in box.min[axisC]...box.max[axisC] {
                            let v = src[from + ic * sc]
                            dst[to + ic * sc] = v
                            if v != 0 { any = true }
                        }
                        if any {
                            outLo[axes.0] = min(outLo[axes.0], ia); outHi[axes.0] = max(outHi[axes.0], ia)
                            outLo[axes.1] = min(outLo[axes.1], ib); outHi[axes.1] = max(outHi[axes.1], ib)
                        }
                    }
                }
            }
        }
        if outHi[axes.0] < 0 { return (out, nil) }
        // The carried axis keeps its coordinates: its extent is at most the input's.
        outLo[axisC] = box.min[axisC]; outHi[axisC] = box.max[axisC]
        return (out, (outLo, outHi))
    }

    /// Cubic B-spline interpolation coefficients of `f` with mirror-symmetric extension
    /// (c[-k] = c[k], c[n-1+k] = c[n-1-k]), the boundary `spline_filter1d(mode='mirror')` uses.
    static func mirrorCubicSplineCoefficients(_ f: [Double]) -> [Double] {
        let n = f.count
        if n < 2 { return f }
        // Dense system A c = 6 f with A = tridiag(1, 4, 1), mirror-folded at both ends.
        var a = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for j in 0..<n {
            a[j][j] += 4
            a[j][mirror(j - 1, n)] += 1
            a[j][mirror(j + 1, n)] += 1
        }
        var b = f.map { 6 * $0 }
        for col in 0..<n {   // Gaussian elimination with partial pivoting (n is tiny)
            var pivot = col
            for r in col + 1..<n where abs(a[r][col]) > abs(a[pivot][col]) { pivot = r }
            a.swapAt(col, pivot); b.swapAt(col, pivot)
            for r in col + 1..<n {
                let factor = a[r][col] / a[col][col]
                if factor == 0 { continue }
                for k in col..<n { a[r][k] -= factor * a[col][k] }
                b[r] -= factor * b[col]
            }
        }
        var c = [Double](repeating: 0, count: n)
        for r in stride(from: n - 1, through: 0, by: -1) {
            var s = b[r]
            for k in r + 1..<n { s -= a[r][k] * c[k] }
            c[r] = s / a[r][r]
        }
        return c
    }

    /// Mirror index mapping of elasticdeform / ndimage (period 2n-2, edge voxels not repeated).
    @inline(__always)
    static func mirror(_ idx: Int, _ len: Int) -> Int {
        if len <= 1 { return 0 }
        let s2 = 2 * len - 2
        var i = idx
        if i < 0 {
            i = s2 * (-i / s2) + i
            i = i <= 1 - len ? i + s2 : -i
        } else if i >= len {
            i -= s2 * (i / s2)
            if i >= len { i = s2 - i }
        }
        return i
    }
}

/// Per output index along one axis: the 4 control-point indices (mirrored) and cubic B-spline
/// weights of the displacement interpolation, control point cp = (points-1)·j/(n-1).
private struct SplineTable {
    var index: [Int]
    var weight: [Double]

    init(outputCount n: Int, controlPoints points: Int) {
        index = [Int](repeating: 0, count: 4 * n)
        weight = [Double](repeating: 0, count: 4 * n)
        for j in 0..<n {
            let cp = n > 1 ? Double(points - 1) * Double(j) / Double(n - 1) : 0
            let start = Int(cp.rounded(.down)) - 1
            let x = cp - cp.rounded(.down)
            let y = x, z = 1.0 - x
            var w = [0.0, 0.0, 0.0, 0.0]
            w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0
            w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
            w[0] = z * z * z / 6.0
            w[3] = 1.0
            for i in 0..<3 { w[3] -= w[i] }
            for l in 0..<4 {
                index[4 * j + l] = ElasticDeform.mirror(start + l, points)
                weight[4 * j + l] = w[l]
            }
        }
    }
}
