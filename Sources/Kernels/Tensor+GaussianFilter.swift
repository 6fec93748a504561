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
    /// Axes are filtered in order D, H, W with a Float32 result after each pass, as scipy does for
    /// float32 input. Each pass is whole-row multiply-adds (vectorised); two buffers ping-pong.
    public func gaussianFilter(sigma: [Double], truncate: Double = 4.0) -> Tensor {
        precondition(rank >= 3 && sigma.count == 3 && sigma.allSatisfy { $0 >= 0 },
                     "gaussianFilter: input \(shape) needs 3 trailing axes and 3 sigmas ≥ 0, got \(sigma)")
        let axes = (0..<3).filter { sigma[$0] > 1e-15 }
        guard !axes.isEmpty, count > 0 else { return self }
        let dims = Array(shape.suffix(3))
        var current = self
        var spare: Tensor? = nil
        for axis in axes {
            let weights = Tensor.gaussianKernel1d(sigma: sigma[axis], truncate: truncate)
            var out: Tensor
            if let buffer = spare { out = buffer; spare = nil } else { out = Tensor(uninitialized: shape) }
            current.correlate1d(axis: axis, dims: dims, weights: weights, into: &out)
            // The input of this pass becomes the next output buffer (never `self`'s storage).
            spare = axis == axes.first ? nil : current
            current = out
        }
        return current
    }

    /// Half-sample symmetric index of `i` into `0..<n`.
    static func reflectIndex(_ i: Int, _ n: Int) -> Int {
        if n == 1 { return 0 }
        var j = i % (2 * n)
        if j < 0 { j += 2 * n }
        return j < n ? j : 2 * n - 1 - j
    }

    /// `out` = 1-D correlation of `self` with `weights` along `axis` of the trailing (D, H, W).
    private func correlate1d(axis: Int, dims: [Int], weights: [Float], into out: inout Tensor) {
        let n = dims[axis]
        let radius = weights.count / 2
        let stride = dims[(axis + 1)...].reduce(1, *)
        let outerCount = count / (n * stride)
        // Padded line position p ∈ 0..<n+2r reads input reflectIndex(p − r).
        let map = (0..<(n + 2 * radius)).map { Tensor.reflectIndex($0 - radius, n) }
        let taps = weights.count
        withPointer { x in
            out.withMutablePointer { y in
            weights.withUnsafeBufferPointer { w in
            map.withUnsafeBufferPointer { m in
                if stride == 1 {
                    // Last axis: copy each line with its reflected border, then shifted multiply-adds.
                    KernelContext.parallelFor(outerCount, minimumChunk: 16) { r in
                        let line = UnsafeMutablePointer<Float>.allocate(capacity: n + 2 * radius)
                        defer { line.deallocate() }
                        for o in r {
                            let src = x + o * n, dst = y + o * n
                            for p in 0..<(n + 2 * radius) { line[p] = src[m[p]] }
                            let w0 = w[0]
                            for i in 0..<n { dst[i] = w0 * line[i] }
                            for t in 1..<taps {
                                let wt = w[t], q = line + t
                                for i in 0..<n { dst[i] += wt * q[i] }
                            }
                        }
                    }
                } else {
                    // Outer axes: whole contiguous rows of `stride` elements, weighted and summed.
                    KernelContext.parallelFor(outerCount * n, minimumChunk: 4) { r in
                        for job in r {
                            let o = job / n, i = job % n
                            let dst = y + (o * n + i) * stride
                            let src0 = x + (o * n + m[i]) * stride
                            let w0 = w[0]
                            for j in 0..<stride { dst[j] = w0 * src0[j] }
                            for t in 1..<taps {
                                let src = x + (o * n + m[i + t]) * stride
                                let wt = w[t]
                                for j in 0..<stride { dst[j] += wt * src[j] }
                            }
                        }
                    }
                }
            }}}
        }
    }
}
