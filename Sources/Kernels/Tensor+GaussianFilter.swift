import Foundation

/// `scipy.ndimage.gaussian_filter` (order 0, mode 'reflect', cval unused) on the last three axes.
extension Tensor {
    /// The normalised 1-D kernel scipy uses: radius `Int(truncate·σ + 0.5)`, weights `exp(−x²/2σ²)`.
    public static func gaussianKernel1d(sigma: Double, truncate: Double = 4.0) -> [Float] {
        let radius = Int(truncate * sigma + 0.5)
        let w = (-radius...radius).map { exp(-0.5 / (sigma * sigma) * Double($0 * $0)) }
        let s = w.reduce(0, +)
        return w.map { Float($0 / s) }
    }

    /// Separable Gaussian filter over the last three axes (D, H, W) with per-axis `sigma`
    /// (σ = 0 leaves that axis alone) and scipy's 'reflect' boundary (d c b a | a b c d | d c b a).
    public func gaussianFilter(sigma: [Double], truncate: Double = 4.0) -> Tensor {
        precondition(rank >= 3 && sigma.count == 3 && sigma.allSatisfy { $0 >= 0 },
                     "gaussianFilter: input \(shape) needs 3 trailing axes and 3 sigmas ≥ 0, got \(sigma)")
        var result = self
        let dims = Array(shape.suffix(3))
        for axis in 0..<3 where sigma[axis] > 1e-15 {
            let weights = Tensor.gaussianKernel1d(sigma: sigma[axis], truncate: truncate)
            result = result.correlated1d(axis: axis, dims: dims, weights: weights)
        }
        return result
    }

    /// Half-sample symmetric index of `i` into `0..<n`.
    static func reflectIndex(_ i: Int, _ n: Int) -> Int {
        if n == 1 { return 0 }
        var j = i % (2 * n)
        if j < 0 { j += 2 * n }
        return j < n ? j : 2 * n - 1 - j
    }

    private func correlated1d(axis: Int, dims: [Int], weights: [Float]) -> Tensor {
        let n = dims[axis]
        let radius = weights.count / 2
        let stride = dims[(axis + 1)...].reduce(1, *)
        let outerCount = count / (n * stride)
        var out = Tensor(uninitialized: shape)
        // Index map of the padded line: position p ∈ 0..<n+2r reads input reflectIndex(p − r).
        let map = (0..<(n + 2 * radius)).map { Tensor.reflectIndex($0 - radius, n) }
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(outerCount * stride, minimumChunk: 64) { r in
                    var line = [Float](repeating: 0, count: n + 2 * radius)
                    for job in r {
                        let o = job / stride, s = job % stride
                        let base = o * n * stride + s
                        for p in 0..<line.count { line[p] = x[base + map[p] * stride] }
                        for i in 0..<n {
                            var acc: Float = 0
                            for t in 0..<weights.count { acc += weights[t] * line[i + t] }
                            y[base + i * stride] = acc
                        }
                    }
                }
            }
        }
        return out
    }
}
