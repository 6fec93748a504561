import COpenBLAS
import KernelsAVX512

/// The geometry of a zero-padded 3-D convolution (PyTorch `Conv3d` cross-correlation, NCDHW)
/// and its three products:
/// - forward: the Kernels convolution (`Tensor.conv3d`);
/// - input gradient: the Kernels transposed convolution (`Tensor.convTranspose3d`) with the
///   same weight (the adjoint of the forward), or for stride 1 the Kernels convolution of dY
///   with the flipped, transposed kernel (`useKernelsTransposedGradient` chooses, see below);
/// - weight gradient: `dW[co, k] = Σ_p dY[co, p] · col[k, p]` on tiles of im2col columns
///   (Kernels has no weight-gradient op).
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

    /// "16→32 k3 s2 @96³" (input channels → output channels, kernel, stride, input size).
    public var summary: String {
        let size = inSize.allSatisfy({ $0 == inSize[0] }) ? "\(inSize[0])³" : inSize.map(String.init).joined(separator: "×")
        return "\(inChannels)→\(outChannels) k\(kernel[0]) s\(stride[0]) @\(size)"
    }
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

    /// y = conv3d(x, W) + b on the Kernels convolution. `weight` is [Cout, Cin, kD, kH, kW].
    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let n = x.shape[0]
        precondition(x.shape == [n, inChannels] + inSize && weight.shape == [outChannels, inChannels] + kernel,
                     "conv forward: input \(x.shape), weight \(weight.shape) do not match \(self)")
        return x.conv3d(weight: weight, bias: bias, stride: stride, padding: .symmetric(padding))
    }

    /// The transposed convolution's output padding that gives back `inSize` from `outSize`.
    var adjointOutputPadding: [Int] {
        (0..<3).map { inSize[$0] - ((outSize[$0] - 1) * stride[$0] - 2 * padding[$0] + kernel[$0]) }
    }

    /// dW[co, k] = Σ_b Σ_p dY[b, co, p] col(x[b])[k, p], shaped [Cout, Cin, kD, kH, kW].
    /// Computed as dWᵀ[k, co] = col · dYᵀ (M = Cin·k³ rows, N = Cout, K = positions): OpenBLAS
    /// handles a small N far better than a small M (Cout is 3…64 here), then transposed
    /// (measured against dY·colᵀ and against one GEMM per kernel tap without im2col:
    /// Benchmarks/results/trainer.md).
    /// With `KernelContext.useAVX512` and `useDirectWeightGradient`, the direct AVX-512 kernel
    /// (`KernelsAVX512.ConvWeightGradient`: no im2col buffer, partial sums in registers) instead.
    public func weightGradient(input x: Tensor, gradOutput dy: Tensor) -> Tensor {
        let n = x.shape[0]
        precondition(x.shape == [n, inChannels] + inSize && dy.shape == [n, outChannels] + outSize,
                     "conv weight gradient: input \(x.shape), grad \(dy.shape) do not match \(self)")
        if KernelContext.useAVX512 && ConvGeometry.useDirectWeightGradient && outSpatial >= ConvGeometry.directWeightGradientMinPositions {
            var dw = Tensor(uninitialized: [outChannels, inChannels] + kernel)
            x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { gp in dw.withUnsafeMutableBufferPointer { wp in
                ConvWeightGradient.compute(input: xp.baseAddress!, channels: inChannels, inputDims: (inSize[0], inSize[1], inSize[2]),
                                           gradOutput: gp.baseAddress!, outChannels: outChannels,
                                           outputDims: (outSize[0], outSize[1], outSize[2]),
                                           kernel: (kernel[0], kernel[1], kernel[2]), stride: (stride[0], stride[1], stride[2]),
                                           padding: (padding[0], padding[1], padding[2]), batch: n,
                                           weightGradient: wp.baseAddress!, threads: KernelContext.threads)
            }}}
            return dw
        }
        return gemmWeightGradient(input: x, gradOutput: dy)
    }

    /// The portable weight gradient: im2col tiles and `cblas_sgemm` (see `weightGradient`).
    public func gemmWeightGradient(input x: Tensor, gradOutput dy: Tensor) -> Tensor {
        let n = x.shape[0]
        var dwt = [Float](repeating: 0, count: rows * outChannels)
        let tile = tileColumns
        var col = [Float](unsafeUninitializedCapacity: rows * tile) { _, c in c = rows * tile }
        x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { gp in dwt.withUnsafeMutableBufferPointer { wp in
            col.withUnsafeMutableBufferPointer { cp in
                for b in 0..<n {
                    var p0 = 0
                    while p0 < outSpatial {
                        let cnt = min(tile, outSpatial - p0)
                        im2col(xp.baseAddress! + b * inChannels * inSpatial, p0: p0, n: cnt, into: cp.baseAddress!)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outChannels), Int32(cnt),
                                    1, cp.baseAddress!, Int32(cnt), gp.baseAddress! + b * outChannels * outSpatial + p0,
                                    Int32(outSpatial), 1, wp.baseAddress!, Int32(outChannels))
                        p0 += cnt
                    }
                }
            }
        }}}
        var dw = Tensor(uninitialized: [outChannels, inChannels] + kernel)
        dw.withUnsafeMutableBufferPointer { d in
            for k in 0..<rows { for co in 0..<outChannels { d[co * rows + k] = dwt[k * outChannels + co] } }
        }
        return dw
    }

    /// dX = col2im(Wᵀ dY), shaped like the convolution's input: the Kernels transposed
    /// convolution of dY with the same weight (gather form, no scatter). With stride 1 and
    /// `useKernelsTransposedGradient` off, the Kernels convolution of dY with the flipped,
    /// transposed kernel instead (benchmarks compare the two).
    public func inputGradient(weight: Tensor, gradOutput dy: Tensor) -> Tensor {
        let n = dy.shape[0]
        precondition(dy.shape == [n, outChannels] + outSize && weight.shape == [outChannels, inChannels] + kernel,
                     "conv input gradient: grad \(dy.shape), weight \(weight.shape) do not match \(self)")
        if !ConvGeometry.useKernelsTransposedGradient && stride == [1, 1, 1]
            && (0..<3).allSatisfy({ padding[$0] <= kernel[$0] - 1 }) {
            let flipped = ConvGeometry(inChannels: outChannels, outChannels: inChannels, kernel: kernel, stride: [1, 1, 1],
                                       padding: (0..<3).map { kernel[$0] - 1 - padding[$0] }, inSize: outSize)
            if flipped.outSize == inSize { return flipped.forward(dy, weight: flippedTransposed(weight), bias: nil) }
        }
        return dy.convTranspose3d(weight: weight, stride: stride, padding: padding, outputPadding: adjointOutputPadding)
    }

    /// Stride-1 input gradients through `Tensor.convTranspose3d` (true) or through the flipped
    /// kernel's `Tensor.conv3d` (false, the default: measured faster, Benchmarks/results/trainer.md).
    nonisolated(unsafe) public static var useKernelsTransposedGradient = false

    /// Weight gradients through the direct AVX-512 kernel when `KernelContext.useAVX512` (true,
    /// the default) or always through im2col + `cblas_sgemm` (false; tests and A/B benchmarks).
    nonisolated(unsafe) public static var useDirectWeightGradient = true

    /// Smallest output (positions per image) that takes the direct weight gradient; smaller
    /// outputs (the 6³ and 12³ levels: few positions, many channels) are GEMM-shaped and go
    /// through im2col + sgemm (measured: Benchmarks/results/trainer.md). Tests set 0.
    nonisolated(unsafe) public static var directWeightGradientMinPositions = 4096

    /// Positions per kernel call of the direct weight gradient (tests vary it).
    public static var directWeightGradientChunk: Int {
        get { ConvWeightGradient.chunkPositions }
        set { ConvWeightGradient.chunkPositions = newValue }
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
        var sums = [Double](repeating: 0, count: n * c)
        withUnsafeBufferPointer { p in sums.withUnsafeMutableBufferPointer { sp in
            let base = p.baseAddress!, out = sp.baseAddress!
            AutogradParallel.forEach(n * c) { j in out[j] = Tensor.sum(base + j * inner, count: inner) }
        }}
        var out = [Float](repeating: 0, count: c)
        for j in 0..<(n * c) { out[j % c] += Float(sums[j]) }
        return Tensor(shape: [c], data: out)
    }
}

extension Tensor {
    /// Σ p[0..<count]: 16 float lanes, added into a Double every 1024 vectors.
    static func sum(_ p: UnsafePointer<Float>, count: Int) -> Double {
        var total = 0.0, acc = SIMD16<Float>(), i = 0, k = 0
        while i + 16 <= count {
            acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16; k += 1
            if k == 1024 { total += Double(acc.sum()); acc = SIMD16<Float>(); k = 0 }
        }
        total += Double(acc.sum())
        while i < count { total += Double(p[i]); i += 1 }
        return total
    }

    /// (Σ p, Σ p·q) over 0..<count, as `sum`.
    static func sumAndDot(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, count: Int) -> (Double, Double) {
        var s = 0.0, d = 0.0, accS = SIMD16<Float>(), accD = SIMD16<Float>(), i = 0, k = 0
        while i + 16 <= count {
            let a = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            let b = UnsafeRawPointer(q + i).loadUnaligned(as: SIMD16<Float>.self)
            accS += a; accD += a * b
            i += 16; k += 1
            if k == 1024 { s += Double(accS.sum()); d += Double(accD.sum()); accS = SIMD16<Float>(); accD = accS; k = 0 }
        }
        s += Double(accS.sum()); d += Double(accD.sum())
        while i < count { s += Double(p[i]); d += Double(p[i] * q[i]); i += 1 }
        return (s, d)
    }

    /// Σ (p − m)² over 0..<count, as `sum`.
    static func squaredDeviation(_ p: UnsafePointer<Float>, mean m: Float, count: Int) -> Double {
        var total = 0.0, acc = SIMD16<Float>(), i = 0, k = 0
        let mv = SIMD16<Float>(repeating: m)
        while i + 16 <= count {
            let d = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) - mv
            acc += d * d
            i += 16; k += 1
            if k == 1024 { total += Double(acc.sum()); acc = SIMD16<Float>(); k = 0 }
        }
        total += Double(acc.sum())
        while i < count { let d = Double(p[i] - m); total += d * d; i += 1 }
        return total
    }
}
