import COpenBLAS

/// The geometry of a zero-padded 3-D convolution (PyTorch `Conv3d` cross-correlation, NCDHW)
/// and its three GEMM-lowered products on tiles of im2col columns:
/// - forward: `y[co, p] = Σ_k W[co, k] · col[k, p]` (k runs over (ci, kd, kh, kw));
/// - weight gradient: `dW[co, k] = Σ_p dY[co, p] · col[k, p]`;
/// - input gradient: `dX = col2im(Wᵀ · dY)`.
/// A transposed convolution is the adjoint of the convolution with the same geometry, so the
/// same three products give its forward (input gradient), input gradient (forward) and weight
/// gradient (weight gradient with the roles of input and output swapped).
public struct ConvGeometry: Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var kernel: [Int]
    public var stride: [Int]
    public var padding: [Int]
    /// Spatial size of the convolution's input (D, H, W) and of its output.
    public var inSize: [Int]
    public var outSize: [Int]

    public init(inChannels: Int, outChannels: Int, kernel: [Int], stride: [Int], padding: [Int], inSize: [Int]) {
        precondition(kernel.count == 3 && stride.count == 3 && padding.count == 3 && inSize.count == 3,
                     "ConvGeometry: kernel \(kernel), stride \(stride), padding \(padding), input \(inSize) must be 3-D")
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding; self.inSize = inSize
        self.outSize = (0..<3).map { (inSize[$0] + 2 * padding[$0] - kernel[$0]) / stride[$0] + 1 }
        precondition(outSize.allSatisfy { $0 > 0 }, "ConvGeometry: empty output \(outSize) for input \(inSize)")
    }

    var kernelVolume: Int { kernel[0] * kernel[1] * kernel[2] }
    var rows: Int { inChannels * kernelVolume }
    var inSpatial: Int { inSize[0] * inSize[1] * inSize[2] }
    var outSpatial: Int { outSize[0] * outSize[1] * outSize[2] }

    /// Columns per tile: whole output rows (oh, ·), about 8 MB of im2col floats.
    var tileColumns: Int {
        let rowLen = outSize[2]
        let rowsPerTile = max(1, (8 << 20) / 4 / max(1, rows * rowLen))
        return min(outSpatial, rowsPerTile * rowLen)
    }

    /// The outputs `lo..<hi` whose input `o·stride + offset` lies in `0..<inCount`.
    static func validRange(outCount: Int, inCount: Int, stride: Int, offset: Int) -> (Int, Int) {
        let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let hi = inCount - offset <= 0 ? 0 : min(outCount, (inCount - offset + stride - 1) / stride)
        return (min(lo, outCount), hi)
    }

    /// Fills `col[k, 0..<n]` for output positions `p0..<p0+n` (n a multiple of the output row).
    func im2col(_ x: UnsafePointer<Float>, p0: Int, n: Int, into col: UnsafeMutablePointer<Float>) {
        let (oH, oW) = (outSize[1], outSize[2])
        let (iD, iH, iW) = (inSize[0], inSize[1], inSize[2])
        let rowsOut = n / oW, r0 = p0 / oW
        AutogradParallel.forEach(rows) { k in
            let ci = k / kernelVolume, t = k % kernelVolume
            let kd = t / (kernel[1] * kernel[2]), kh = (t / kernel[2]) % kernel[1], kw = t % kernel[2]
            let xc = x + ci * inSpatial
            let dst = col + k * n
            for r in 0..<rowsOut {
                let od = (r0 + r) / oH, oh = (r0 + r) % oH
                let id = od * stride[0] - padding[0] + kd, ih = oh * stride[1] - padding[1] + kh
                let out = dst + r * oW
                if id < 0 || id >= iD || ih < 0 || ih >= iH { out.update(repeating: 0, count: oW); continue }
                let src = xc + (id * iH + ih) * iW
                let s = stride[2], off = kw - padding[2]
                let (lo, hi) = ConvGeometry.validRange(outCount: oW, inCount: iW, stride: s, offset: off)
                if lo > 0 { out.update(repeating: 0, count: lo) }
                if hi < oW { (out + hi).update(repeating: 0, count: oW - hi) }
                if s == 1 {
                    if hi > lo { (out + lo).update(from: src + lo + off, count: hi - lo) }
                } else {
                    for ow in lo..<max(lo, hi) { out[ow] = src[ow * s + off] }
                }
            }
        }
    }

    /// Adds `col[k, 0..<n]` back onto the input positions it was gathered from.
    func col2imAdd(_ col: UnsafePointer<Float>, p0: Int, n: Int, into dx: UnsafeMutablePointer<Float>) {
        let (oH, oW) = (outSize[1], outSize[2])
        let (iD, iH, iW) = (inSize[0], inSize[1], inSize[2])
        let rowsOut = n / oW, r0 = p0 / oW
        // Parallel over input channels: each writes only its own channel of dx.
        AutogradParallel.forEach(inChannels) { ci in
            let xc = dx + ci * inSpatial
            for t in 0..<kernelVolume {
                let k = ci * kernelVolume + t
                let kd = t / (kernel[1] * kernel[2]), kh = (t / kernel[2]) % kernel[1], kw = t % kernel[2]
                let src = col + k * n
                for r in 0..<rowsOut {
                    let od = (r0 + r) / oH, oh = (r0 + r) % oH
                    let id = od * stride[0] - padding[0] + kd, ih = oh * stride[1] - padding[1] + kh
                    if id < 0 || id >= iD || ih < 0 || ih >= iH { continue }
                    let dst = xc + (id * iH + ih) * iW
                    let row = src + r * oW
                    let s = stride[2], off = kw - padding[2]
                    let (lo, hi) = ConvGeometry.validRange(outCount: oW, inCount: iW, stride: s, offset: off)
                    for ow in lo..<max(lo, hi) { dst[ow * s + off] += row[ow] }
                }
            }
        }
    }

    /// y[b, co, p] = Σ W[co, k] col(x[b])[k, p] (+ bias). `weight` is [Cout, Cin, kD, kH, kW].
    /// Runs on the kernels' tiled per-thread im2col+sgemm engine (`Tensor.conv3d`).
    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let n = x.shape[0]
        precondition(x.shape == [n, inChannels] + inSize && weight.shape == [outChannels, inChannels] + kernel,
                     "conv forward: input \(x.shape), weight \(weight.shape) do not match \(self)")
        if ConvGeometry.useKernelsForward {
            return x.conv3d(weight: weight, bias: bias, stride: stride, padding: .symmetric(padding))
        }
        return gemmForward(x, weight: weight, bias: bias)
    }

    /// Whether `forward` uses the kernels' engine (true) or this file's tile loop (benchmarks).
    nonisolated(unsafe) public static var useKernelsForward = true

    /// The same product with this file's im2col tiles and one multi-threaded sgemm per tile.
    public func gemmForward(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let n = x.shape[0]
        var y = Tensor(uninitialized: [n, outChannels] + outSize)  // every element written by the GEMM (β = 0)
        let tile = tileColumns
        var col = [Float](unsafeUninitializedCapacity: rows * tile) { _, c in c = rows * tile }
        x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            col.withUnsafeMutableBufferPointer { cp in
                for b in 0..<n {
                    var p0 = 0
                    while p0 < outSpatial {
                        let cnt = min(tile, outSpatial - p0)
                        im2col(xp.baseAddress! + b * inChannels * inSpatial, p0: p0, n: cnt, into: cp.baseAddress!)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(outChannels), Int32(cnt), Int32(rows),
                                    1, wp.baseAddress!, Int32(rows), cp.baseAddress!, Int32(cnt),
                                    0, yp.baseAddress! + b * outChannels * outSpatial + p0, Int32(outSpatial))
                        p0 += cnt
                    }
                }
            }
        }}}
        if let bias { y.addBiasPerChannel(bias) }
        return y
    }

    /// dW[co, k] = Σ_b Σ_p dY[b, co, p] col(x[b])[k, p], shaped [Cout, Cin, kD, kH, kW].
    public func weightGradient(input x: Tensor, gradOutput dy: Tensor) -> Tensor {
        let n = x.shape[0]
        precondition(x.shape == [n, inChannels] + inSize && dy.shape == [n, outChannels] + outSize,
                     "conv weight gradient: input \(x.shape), grad \(dy.shape) do not match \(self)")
        var dw = Tensor(zeros: [outChannels, inChannels] + kernel)
        let tile = tileColumns
        var col = [Float](unsafeUninitializedCapacity: rows * tile) { _, c in c = rows * tile }
        x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { gp in dw.withUnsafeMutableBufferPointer { wp in
            col.withUnsafeMutableBufferPointer { cp in
                for b in 0..<n {
                    var p0 = 0
                    while p0 < outSpatial {
                        let cnt = min(tile, outSpatial - p0)
                        im2col(xp.baseAddress! + b * inChannels * inSpatial, p0: p0, n: cnt, into: cp.baseAddress!)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(outChannels), Int32(rows), Int32(cnt),
                                    1, gp.baseAddress! + b * outChannels * outSpatial + p0, Int32(outSpatial),
                                    cp.baseAddress!, Int32(cnt), 1, wp.baseAddress!, Int32(rows))
                        p0 += cnt
                    }
                }
            }
        }}}
        return dw
    }

    /// dX = col2im(Wᵀ dY), shaped like the convolution's input. With stride 1 it is the
    /// forward convolution of dY with the flipped, transposed kernel (one well-shaped GEMM and
    /// no scatter).
    public func inputGradient(weight: Tensor, gradOutput dy: Tensor) -> Tensor {
        let n = dy.shape[0]
        precondition(dy.shape == [n, outChannels] + outSize && weight.shape == [outChannels, inChannels] + kernel,
                     "conv input gradient: grad \(dy.shape), weight \(weight.shape) do not match \(self)")
        if stride == [1, 1, 1] && (0..<3).allSatisfy({ padding[$0] <= kernel[$0] - 1 }) {
            let flipped = ConvGeometry(inChannels: outChannels, outChannels: inChannels, kernel: kernel, stride: [1, 1, 1],
                                       padding: (0..<3).map { kernel[$0] - 1 - padding[$0] }, inSize: outSize)
            if flipped.outSize == inSize { return flipped.forward(dy, weight: flippedTransposed(weight), bias: nil) }
        }
        var dx = Tensor(zeros: [n, inChannels] + inSize)
        let tile = tileColumns
        var col = [Float](unsafeUninitializedCapacity: rows * tile) { _, c in c = rows * tile }
        dy.withUnsafeBufferPointer { gp in weight.withUnsafeBufferPointer { wp in dx.withUnsafeMutableBufferPointer { xp in
            col.withUnsafeMutableBufferPointer { cp in
                for b in 0..<n {
                    var p0 = 0
                    while p0 < outSpatial {
                        let cnt = min(tile, outSpatial - p0)
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(rows), Int32(cnt), Int32(outChannels),
                                    1, wp.baseAddress!, Int32(rows),
                                    gp.baseAddress! + b * outChannels * outSpatial + p0, Int32(outSpatial),
                                    0, cp.baseAddress!, Int32(cnt))
                        col2imAdd(cp.baseAddress!, p0: p0, n: cnt, into: xp.baseAddress! + b * inChannels * inSpatial)
                        p0 += cnt
                    }
                }
            }
        }}}
        return dx
    }
}

extension ConvGeometry {
    /// W'[ci, co, a, b, c] = W[co, ci, kD−1−a, kH−1−b, kW−1−c].
    func flippedTransposed(_ w: Tensor) -> Tensor {
        let kv = kernelVolume
        var out = Tensor(uninitialized: [inChannels, outChannels] + kernel)
        w.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            for co in 0..<outChannels { for ci in 0..<inChannels {
                let s = src.baseAddress! + (co * inChannels + ci) * kv, d = dst.baseAddress! + (ci * outChannels + co) * kv
                for t in 0..<kv { d[kv - 1 - t] = s[t] }
            }}
        }}
        return out
    }
}

extension Tensor {
    /// Adds `bias[c]` to every voxel of channel c (NC…).
    mutating func addBiasPerChannel(_ bias: Tensor) {
        let (n, c) = (shape[0], shape[1]), inner = count / max(1, n * c)
        precondition(bias.count == c, "bias \(bias.shape) for \(c) channels")
        let bv = bias.scalars
        withUnsafeMutableBufferPointer { p in
            for b in 0..<n { for ch in 0..<c {
                let base = p.baseAddress! + (b * c + ch) * inner, v = bv[ch]
                for i in 0..<inner { base[i] += v }
            }}
        }
    }

    /// Σ over batch and space per channel (the bias gradient), shaped [C].
    func channelSums() -> Tensor {
        let (n, c) = (shape[0], shape[1]), inner = count / max(1, n * c)
        var out = [Float](repeating: 0, count: c)
        withUnsafeBufferPointer { p in
            for b in 0..<n { for ch in 0..<c {
                var s: Float = 0
                let base = p.baseAddress! + (b * c + ch) * inner
                for i in 0..<inner { s += base[i] }
                out[ch] += s
            }}
        }
        return Tensor(shape: [c], data: out)
    }
}
