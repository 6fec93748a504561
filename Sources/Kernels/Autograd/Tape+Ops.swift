import Foundation

/// The differentiable ops: each computes its forward value and records what its backward rule
/// (Tape+Gradients.swift) needs.
extension Tape {
    /// PyTorch `Conv3d` (zero padding): `weight` [Cout, Cin, kD, kH, kW], `bias` [Cout].
    public func conv3d(_ x: Variable, weight: Variable, bias: Variable?, stride: [Int], padding: [Int]) -> Variable {
        let xt = self[x], w = self[weight]
        let g = ConvGeometry(inChannels: xt.shape[1], outChannels: w.shape[0], kernel: Array(w.shape[2...]),
                             stride: stride, padding: padding, inSize: Array(xt.shape[2...]))
        let y = Tape.timed("fwd conv", g) { g.forward(xt, weight: w, bias: bias.map { self[$0] }) }
        return append(.conv3d(g), [x, weight] + (bias.map { [$0] } ?? []), y)
    }

    /// PyTorch `ConvTranspose3d` (groups 1, dilation 1): `weight` [Cin, Cout, kD, kH, kW];
    /// output size (in − 1)·stride − 2·padding + k + outputPadding.
    public func convTranspose3d(_ x: Variable, weight: Variable, bias: Variable?, stride: [Int], padding: [Int],
                                outputPadding: [Int]) -> Variable {
        let xt = self[x], w = self[weight]
        precondition(xt.rank == 5 && w.rank == 5 && w.shape[0] == xt.shape[1],
                     "convTranspose3d: input \(xt.shape) and weight \(w.shape) do not match")
        let kernel = Array(w.shape[2...])
        var outSize = [0, 0, 0]
        for d in 0..<3 {
            let full: Int = (xt.shape[2 + d] - 1) * stride[d] + kernel[d]
            outSize[d] = full - 2 * padding[d] + outputPadding[d]
        }
        precondition((0..<3).allSatisfy { outputPadding[$0] < stride[$0] }, "convTranspose3d: outputPadding \(outputPadding) ≥ stride \(stride)")
        // The adjoint convolution maps the transposed conv's output (Cout channels) to its input.
        let g = ConvGeometry(inChannels: w.shape[1], outChannels: w.shape[0], kernel: kernel,
                             stride: stride, padding: padding, inSize: outSize)
        precondition(g.outSize == Array(xt.shape[2...]), "convTranspose3d: geometry \(g) does not invert to \(xt.shape)")
        let y = Tape.timed("fwd convT", g) {
            xt.convTranspose3d(weight: w, bias: bias.map { self[$0] }, stride: stride, padding: padding, outputPadding: outputPadding)
        }
        return append(.convTranspose3d(g), [x, weight] + (bias.map { [$0] } ?? []), y)
    }

    /// `InstanceNorm3d` without affine parameters (MONAI's default): per (n, c), biased variance.
    public func instanceNorm(_ x: Variable, eps: Float = 1e-5) -> Variable {
        let xt = self[x]
        let (n, c) = (xt.shape[0], xt.shape[1]), inner = xt.count / (n * c)
        var y = Tensor(uninitialized: xt.shape)
        var mean = [Float](repeating: 0, count: n * c), rstd = mean
        xt.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            let xb = xp.baseAddress!, yb = yp.baseAddress!
            mean.withUnsafeMutableBufferPointer { mp in rstd.withUnsafeMutableBufferPointer { rp in
                AutogradParallel.forEach(n * c) { j in
                    let src = xb + j * inner, dst = yb + j * inner
                    let m = Float(Tensor.sum(src, count: inner) / Double(inner))
                    let v = Tensor.squaredDeviation(src, mean: m, count: inner)
                    let r = 1 / (Float(v / Double(inner)) + eps).squareRoot()
                    for i in 0..<inner { dst[i] = (src[i] - m) * r }
                    mp[j] = m; rp[j] = r
                }
            }}
        }}
        return append(.instanceNorm(mean: mean, rstd: rstd), [x], y)
    }

    /// `PReLU`: max(0, x) + a·min(0, x), with one slope (shape [1]) or one per channel ([C]).
    public func prelu(_ x: Variable, weight: Variable) -> Variable {
        let xt = self[x], a = self[weight].scalars
        let (n, c) = (xt.shape[0], xt.shape[1]), inner = xt.count / (n * c)
        precondition(a.count == 1 || a.count == c, "prelu: weight \(a.count) for \(c) channels")
        var y = Tensor(uninitialized: xt.shape)
        xt.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { p in
            let src = xp.baseAddress!, dst = p.baseAddress!
            AutogradParallel.forEach(n * c) { j in
                let s = a.count == 1 ? a[0] : a[j % c]
                let xs = src + j * inner, ys = dst + j * inner
                for i in 0..<inner { let v = xs[i]; ys[i] = v < 0 ? v * s : v }
            }
        }}
        return append(.prelu, [x, weight], y)
    }

    public func leakyReLU(_ x: Variable, slope: Float = 0.01) -> Variable {
        var y = self[x]
        y.withUnsafeMutableBufferPointer { p in for i in 0..<p.count where p[i] < 0 { p[i] *= slope } }
        return append(.leakyReLU(slope: slope), [x], y)
    }

    public func add(_ a: Variable, _ b: Variable) -> Variable {
        let at = self[a], bt = self[b]
        precondition(at.shape == bt.shape, "add: shapes \(at.shape) and \(bt.shape) differ")
        // One pass into a fresh tensor (copying `a` first and adding `b` in place is two).
        var y = Tensor(uninitialized: at.shape)
        at.withUnsafeBufferPointer { ap in bt.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
            let (ab, bb, yb) = (ap.baseAddress!, bp.baseAddress!, yp.baseAddress!)
            AutogradParallel.forRanges(yp.count) { lo, hi in for i in lo..<hi { yb[i] = ab[i] + bb[i] } }
        }}}
        return append(.add, [a, b], y)
    }

    /// Concatenation along the channel axis (dim 1), as MONAI's `SkipConnection` does.
    public func concat(_ parts: [Variable]) -> Variable {
        let ts = parts.map { self[$0] }
        let n = ts[0].shape[0], spatial = Array(ts[0].shape[2...])
        precondition(ts.allSatisfy { $0.shape[0] == n && Array($0.shape[2...]) == spatial },
                     "concat: shapes \(ts.map(\.shape)) differ outside the channel axis")
        let channels = ts.map { $0.shape[1] }, total = channels.reduce(0, +)
        let inner = spatial.reduce(1, *)
        var y = Tensor(uninitialized: [n, total] + spatial)
        y.withUnsafeMutableBufferPointer { yp in
            var offset = 0
            for (t, c) in zip(ts, channels) {
                t.withUnsafeBufferPointer { tp in
                    for b in 0..<n {
                        (yp.baseAddress! + (b * total + offset) * inner)
                            .update(from: tp.baseAddress! + b * c * inner, count: c * inner)
                    }
                }
                offset += c
            }
        }
        return append(.concat(channels: channels), parts, y)
    }

    /// Softmax over the channel axis.
    public func softmax(_ x: Variable) -> Variable {
        append(.softmax, [x], Tape.softmaxChannels(self[x]))
    }

    /// MONAI's `DiceCELoss` on logits (see `DiceCELoss`); a scalar.
    public func diceCELoss(logits: Variable, labels: [UInt8], loss: DiceCELoss = DiceCELoss()) -> Variable {
        let (value, grad) = loss.valueAndGradient(logits: self[logits], labels: labels)
        return append(.diceCE(DiceCEGradient(gradient: grad)), [logits], Tensor(shape: [1], data: [value]))
    }

    static func softmaxChannels(_ x: Tensor) -> Tensor {
        let (n, c) = (x.shape[0], x.shape[1]), inner = x.count / (n * c)
        var y = x
        y.withUnsafeMutableBufferPointer { p in
            for b in 0..<n {
                let base = p.baseAddress! + b * c * inner
                for i in 0..<inner {
                    var m = -Float.infinity
                    for ch in 0..<c { m = max(m, base[ch * inner + i]) }
                    var s: Float = 0
                    for ch in 0..<c { let e = expf(base[ch * inner + i] - m); base[ch * inner + i] = e; s += e }
                    let r = 1 / s
                    for ch in 0..<c { base[ch * inner + i] *= r }
                }
            }
        }
        return y
    }
}

/// The logits gradient of a DiceCE loss, computed with its value.
struct DiceCEGradient {
    var gradient: Tensor
}
