import Foundation

/// GroupNorm, channel LayerNorm and InstanceNorm over NC… tensors (biased variance, as PyTorch).
extension Tensor {
    /// PyTorch `GroupNorm(groups, C, eps)`: mean and biased variance over each group of C/groups
    /// channels × all spatial positions, then `weight[c]·x̂ + bias[c]` (each may be nil = 1 / 0).
    public func groupNorm(groups: Int, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 2 && groups > 0 && shape[1] % groups == 0,
                     "groupNorm: \(shape[safe: 1] ?? 0) channels of \(shape) not divisible into \(groups) groups")
        let c = shape[1]
        for t in [weight, bias].compactMap({ $0 }) { precondition(t.count == c, "groupNorm: parameter \(t.shape) for \(c) channels") }
        return normalized(groupSize: c / groups, weight: weight?.scalars, bias: bias?.scalars, eps: eps)
    }

    /// PyTorch `InstanceNorm3d(C, eps, affine)`: GroupNorm with one channel per group.
    public func instanceNorm(weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 2, "instanceNorm: input \(shape) needs N and C axes")
        let c = shape[1]
        for t in [weight, bias].compactMap({ $0 }) { precondition(t.count == c, "instanceNorm: parameter \(t.shape) for \(c) channels") }
        return normalized(groupSize: 1, weight: weight?.scalars, bias: bias?.scalars, eps: eps)
    }

    /// The reference Unet's `LayerNorm`: per voxel, normalise over the C axis
    /// (`(x − mean)/sqrt(var + eps)·gain[c]`, var unbiased=False). `gain` is [C] (any shape of C elements) or nil.
    public func channelLayerNorm(gain: Tensor? = nil, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 2, "channelLayerNorm: input \(shape) needs N and C axes")
        let n = shape[0], c = shape[1], inner = spatialCount
        precondition(gain == nil || gain!.count == c, "channelLayerNorm: gain \(gain!.shape) for \(c) channels")
        let g = gain?.scalars ?? [Float](repeating: 1, count: c)
        var out = Tensor(uninitialized: shape)
        let block = 256
        let blocks = (inner + block - 1) / block
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(n * blocks) { r in
                    var mean = [Double](repeating: 0, count: block)
                    var sq = [Double](repeating: 0, count: block)
                    for job in r {
                        let b = job / blocks, i0 = (job % blocks) * block, i1 = min(inner, i0 + block)
                        let base = b * c * inner
                        for i in 0..<(i1 - i0) { mean[i] = 0; sq[i] = 0 }
                        for ch in 0..<c {
                            let row = x + base + ch * inner
                            for i in i0..<i1 { mean[i - i0] += Double(row[i]) }
                        }
                        for i in 0..<(i1 - i0) { mean[i] /= Double(c) }
                        for ch in 0..<c {
                            let row = x + base + ch * inner
                            for i in i0..<i1 { let d = Double(row[i]) - mean[i - i0]; sq[i - i0] += d * d }
                        }
                        for i in 0..<(i1 - i0) { sq[i] = 1 / (sq[i] / Double(c) + Double(eps)).squareRoot() }
                        for ch in 0..<c {
                            let row = x + base + ch * inner, o = y + base + ch * inner
                            let gc = g[ch]
                            for i in i0..<i1 { o[i] = Float((Double(row[i]) - mean[i - i0]) * sq[i - i0]) * gc }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Normalises each run of `groupSize` consecutive channels (× spatial) of each image.
    private func normalized(groupSize: Int, weight: [Float]?, bias: [Float]?, eps: Float) -> Tensor {
        let n = shape[0], c = shape[1], inner = spatialCount
        let groups = c / groupSize
        let len = groupSize * inner
        var out = Tensor(uninitialized: shape)
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(n * groups) { r in
                    for job in r {
                        let src = x + job * len, dst = y + job * len
                        // Two passes in Double: mean, then centred sum of squares.
                        var s = 0.0
                        for i in 0..<len { s += Double(src[i]) }
                        let mean = s / Double(max(len, 1))
                        var q = 0.0
                        for i in 0..<len { let d = Double(src[i]) - mean; q += d * d }
                        let inv = Float(1 / (q / Double(max(len, 1)) + Double(eps)).squareRoot())
                        let m = Float(mean)
                        for cl in 0..<groupSize {
                            let ch = (job % groups) * groupSize + cl
                            let a = inv * (weight?[ch] ?? 1), b = (bias?[ch] ?? 0) - m * a
                            let o = dst + cl * inner, v = src + cl * inner
                            for i in 0..<inner { o[i] = v[i] * a + b }
                        }
                    }
                }
            }
        }
        return out
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
