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
        let taps = weights.count
        withPointer { x in
            out.withMutablePointer { y in
                if stride == 1 {
                    // Last axis: copy each line with its reflected border, then correlate.
                    KernelContext.parallelFor(outerCount, minimumChunk: 16) { r in
                        var line = [Float](repeating: 0, count: n + 2 * radius)
                        line.withUnsafeMutableBufferPointer { lp in
                            for o in r {
                                let base = o * n
                                for p in 0..<lp.count { lp[p] = x[base + map[p]] }
                                for i in 0..<n {
                                    var acc: Float = 0
                                    for t in 0..<taps { acc += weights[t] * lp[i + t] }
                                    y[base + i] = acc
                                }
                            }
                        }
                    }
                } else {
                    // Outer axes: whole contiguous rows of `stride` elements, weighted and summed.
                    KernelContext.parallelFor(outerCount * n, minimumChunk: 4) { r in
                        for job in r {
                            let o = job / n, i = job % n
                            let dst = y + (o * n + i) * stride
                            let src0 = x + (o * n + map[i]) * stride
                            let w0 = weights[0]
                            for j in 0..<stride { dst[j] = w0 * src0[j] }
                            for t in 1..<max(taps, 1) {
                                let src = x + (o * n + map[i + t]) * stride
                                let wt = weights[t]
                                for j in 0..<stride { dst[j] += wt * src[j] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
