import COpenBLAS
import Foundation

/// Padding used by a convolution: zeros (PyTorch's default) or replicate (`F.pad(mode="replicate")`).
public enum ConvPadding: Sendable { case zeros, replicate }

/// The inference ops the DiffTumor networks need, written for speed on a few CPU cores:
/// convolutions as (slab-wise) im2col + `cblas_sgemm`, transposed convolutions as GEMM + col2im,
/// fused normalisations with SIMD exp. Tensors are NCDHW, batch looped outside the GEMMs.
public enum NetworkOps {
    /// Worker threads for the non-BLAS loops (im2col, norms, attention).
    nonisolated(unsafe) public static var threads: Int = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 2))

    /// Runs `body(i)` for i in 0..<n on up to `threads` threads (contiguous chunks).
    @inline(__always)
    static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(threads, max(1, n / max(minChunk, 1)))
        if workers <= 1 { body(0..<n); return }
        let chunk = (n + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = w * chunk, hi = min(n, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// True when OpenBLAS runs single-threaded and the ops have more than one worker: GEMMs are then
    /// split across the workers (each calling single-threaded `cblas_sgemm` on its part), so no
    /// OpenBLAS thread spins while the workers run the loops around the GEMMs.
    static var workerGEMM: Bool { threads > 1 && BLASThreads.count == 1 }

    /// Row-major C = α·op(A)·op(B) + β·C, split along N (or M when N is small) across the workers
    /// when `workerGEMM`, else one `cblas_sgemm` call.
    static func sgemm(transA: Bool, transB: Bool, M: Int, N: Int, K: Int, alpha: Float = 1,
                      A: UnsafePointer<Float>, lda: Int, B: UnsafePointer<Float>, ldb: Int,
                      beta: Float, C: UnsafeMutablePointer<Float>, ldc: Int) {
        let ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans
        let w = workerGEMM ? min(threads, max(1, (M * N * K) / 2_000_000)) : 1
        if w <= 1 {
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
            return
        }
        if N >= M {
            let chunk = (N + w - 1) / w
            DispatchQueue.concurrentPerform(iterations: w) { i in
                let n0 = i * chunk, n = min(N, n0 + chunk) - n0
                guard n > 0 else { return }
                let b = transB ? B + n0 * ldb : B + n0
                cblas_sgemm(CblasRowMajor, ta, tb, Int32(M), Int32(n), Int32(K), alpha, A, Int32(lda), b, Int32(ldb), beta, C + n0, Int32(ldc))
            }
        } else {
            let chunk = (M + w - 1) / w
            DispatchQueue.concurrentPerform(iterations: w) { i in
                let m0 = i * chunk, m = min(M, m0 + chunk) - m0
                guard m > 0 else { return }
                let a = transA ? A + m0 : A + m0 * lda
                cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(N), Int32(K), alpha, a, Int32(lda), B, Int32(ldb), beta, C + m0 * ldc, Int32(ldc))
            }
        }
    }

    // MARK: - convolution

    /// 3D convolution. `weight` is (Cout, Cin, kd, kh, kw); padding `padFront`/`padBack` per axis.
    public static func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: [Int] = [1, 1, 1],
                              padFront: [Int] = [0, 0, 0], padBack: [Int]? = nil, mode: ConvPadding = .zeros) -> Tensor {
        precondition(x.rank == 5 && weight.rank == 5, "conv3d wants 5-D input and weight, got \(x.shape) and \(weight.shape)")
        let (B, C, D, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let (Co, kd, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3], weight.shape[4])
        precondition(weight.shape[1] == C, "conv3d: input has \(C) channels, weight \(weight.shape)")
        let pb = padBack ?? padFront
        let Do = (D + padFront[0] + pb[0] - kd) / stride[0] + 1
        let Ho = (H + padFront[1] + pb[1] - kh) / stride[1] + 1
        let Wo = (W + padFront[2] + pb[2] - kw) / stride[2] + 1
        precondition(Do > 0 && Ho > 0 && Wo > 0, "conv3d: input \(x.shape) too small for kernel \(weight.shape)")
        var out = Tensor(uninitialized: [B, Co, Do, Ho, Wo])
        let K = C * kd * kh * kw
        let plane = Ho * Wo
        let pointwise = kd == 1 && kh == 1 && kw == 1 && stride == [1, 1, 1] && padFront == [0, 0, 0] && pb == [0, 0, 0]
        let workers = workerGEMM && !pointwise ? min(threads, Do) : 1
        let nz = pointwise ? Do : max(1, min((Do + workers - 1) / workers, (8 << 20) / max(1, K * plane * workers)))
        let colsBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: pointwise ? 1 : K * nz * plane * workers)
        defer { colsBuffer.deallocate() }
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    for b in 0..<B {
                        let src = xp.baseAddress! + b * C * D * H * W
                        let dst = op.baseAddress! + b * Co * Do * plane
                        if pointwise {
                            sgemm(transA: false, transB: false, M: Co, N: D * H * W, K: C, A: wp.baseAddress!, lda: C,
                                  B: src, ldb: D * H * W, beta: 0, C: dst, ldc: D * H * W)
                            continue
                        }
                        // Each worker owns a contiguous range of output depths and its own column buffer.
                        let per = (Do + workers - 1) / workers
                        let body = { (wk: Int) in
                            let cols = colsBuffer.baseAddress! + wk * K * nz * plane
                            var z0 = wk * per
                            let zEnd = min(Do, z0 + per)
                            while z0 < zEnd {
                                let n = min(nz, zEnd - z0)
                                im2col(src, C: C, D: D, H: H, W: W, k: (kd, kh, kw), s: (stride[0], stride[1], stride[2]),
                                       p: (padFront[0], padFront[1], padFront[2]), mode: mode, z0: z0, nz: n, Ho: Ho, Wo: Wo,
                                       dst: cols, parallel: workers == 1)
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(Co), Int32(n * plane), Int32(K),
                                            1, wp.baseAddress!, Int32(K), cols, Int32(n * plane), 0,
                                            dst + z0 * plane, Int32(Do * plane))
                                z0 += n
                            }
                        }
                        if workers > 1 { DispatchQueue.concurrentPerform(iterations: workers, execute: body) } else { body(0) }
                    }
                }
            }
        }
        if let bias { addChannelBias(&out, bias) }
        return out
    }

    /// Fills rows (ci, a, b, c) × columns (z, y, x) for output depths z0..<z0+nz.
    static func im2col(_ src: UnsafePointer<Float>, C: Int, D: Int, H: Int, W: Int, k: (Int, Int, Int), s: (Int, Int, Int),
                       p: (Int, Int, Int), mode: ConvPadding, z0: Int, nz: Int, Ho: Int, Wo: Int, dst: UnsafeMutablePointer<Float>,
                       parallel: Bool = true) {
        let rows = C * k.0 * k.1 * k.2
        let N = nz * Ho * Wo
        let replicate = mode == .replicate
        let run = { (body: (Range<Int>) -> Void) in if parallel { parallelFor(rows, minChunk: 4, body) } else { body(0..<rows) } }
        run { range in
            for r in range {
                let c = r % k.2, b = (r / k.2) % k.1, a = (r / (k.2 * k.1)) % k.0, ci = r / (k.2 * k.1 * k.0)
                var row = dst + r * N
                // Valid x range for stride 1: ix = xo + c - p.2 in [0, W).
                for zo in z0..<(z0 + nz) {
                    var iz = zo * s.0 - p.0 + a
                    if iz < 0 || iz >= D {
                        if !replicate { row.update(repeating: 0, count: Ho * Wo); row += Ho * Wo; continue }
                        iz = min(max(iz, 0), D - 1)
                    }
                    for yo in 0..<Ho {
                        var iy = yo * s.1 - p.1 + b
                        if iy < 0 || iy >= H {
                            if !replicate { row.update(repeating: 0, count: Wo); row += Wo; continue }
                            iy = min(max(iy, 0), H - 1)
                        }
                        let line = src + ((ci * D + iz) * H + iy) * W
                        if s.2 == 1 {
                            let lo = min(Wo, max(0, p.2 - c)), hi = max(lo, min(Wo, W + p.2 - c))
                            if lo > 0 { row.update(repeating: replicate ? line[0] : 0, count: lo) }
                            if hi > lo { (row + lo).update(from: line + (lo - p.2 + c), count: hi - lo) }
                            if hi < Wo { (row + hi).update(repeating: replicate ? line[W - 1] : 0, count: Wo - hi) }
                        } else {
                            for xo in 0..<Wo {
                                let ix = xo * s.2 - p.2 + c
                                if ix >= 0 && ix < W { row[xo] = line[ix] } else { row[xo] = replicate ? line[min(max(ix, 0), W - 1)] : 0 }
                            }
                        }
                        row += Wo
                    }
                }
            }
        }
    }

    /// 3D transposed convolution (PyTorch `ConvTranspose3d`, zero `padding`, no output padding).
    /// `weight` is (Cin, Cout, kd, kh, kw). Computed as GEMM into columns, then col2im scatter-add.
    public static func convTranspose3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int]) -> Tensor {
        precondition(x.rank == 5 && weight.rank == 5 && weight.shape[0] == x.shape[1],
                     "convTranspose3d: input \(x.shape), weight \(weight.shape)")
        let (B, C, D, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let (Co, kd, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3], weight.shape[4])
        let Do = (D - 1) * stride[0] - 2 * padding[0] + kd
        let Ho = (H - 1) * stride[1] - 2 * padding[1] + kh
        let Wo = (W - 1) * stride[2] - 2 * padding[2] + kw
        precondition(Do > 0 && Ho > 0 && Wo > 0, "convTranspose3d: empty output for \(x.shape)")
        var out = Tensor(zeros: [B, Co, Do, Ho, Wo])
        let M = Co * kd * kh * kw
        let plane = H * W
        let nz = max(1, min(D, (8 << 20) / max(1, M * plane)))
        let colsBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: M * nz * plane)
        defer { colsBuffer.deallocate() }
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    do {
                        let cp = colsBuffer
                        for b in 0..<B {
                            let src = xp.baseAddress! + b * C * D * plane
                            let dst = op.baseAddress! + b * Co * Do * Ho * Wo
                            var z0 = 0
                            while z0 < D {
                                let n = min(nz, D - z0)
                                let N = n * plane
                                sgemm(transA: true, transB: false, M: M, N: N, K: C, A: wp.baseAddress!, lda: M,
                                      B: src + z0 * plane, ldb: D * plane, beta: 0, C: cp.baseAddress!, ldc: N)
                                let colsBase = UnsafePointer(cp.baseAddress!)
                                parallelFor(Co) { range in
                                    for co in range {
                                        for a in 0..<kd {
                                            for bb in 0..<kh {
                                                for c in 0..<kw {
                                                    let r = ((co * kd + a) * kh + bb) * kw + c
                                                    var colRow = colsBase + r * N
                                                    // Valid input x: ox = ix*s - p + c in [0, Wo).
                                                    var xlo = 0
                                                    while xlo < W && xlo * stride[2] - padding[2] + c < 0 { xlo += 1 }
                                                    var xhi = W
                                                    while xhi > xlo && (xhi - 1) * stride[2] - padding[2] + c >= Wo { xhi -= 1 }
                                                    for z in z0..<(z0 + n) {
                                                        let oz = z * stride[0] - padding[0] + a
                                                        if oz < 0 || oz >= Do { colRow += plane; continue }
                                                        for y in 0..<H {
                                                            let oy = y * stride[1] - padding[1] + bb
                                                            if oy >= 0 && oy < Ho && xhi > xlo {
                                                                let orow = dst + ((co * Do + oz) * Ho + oy) * Wo
                                                                var ox = xlo * stride[2] - padding[2] + c
                                                                for ix in xlo..<xhi {
                                                                    orow[ox] += colRow[ix]
                                                                    ox += stride[2]
                                                                }
                                                            }
                                                            colRow += W
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                                z0 += n
                            }
                        }
                    }
                }
            }
        }
        if let bias { addChannelBias(&out, bias) }
        return out
    }

    /// Replicate-pads the three spatial axes of a 5-D tensor (front/back per axis).
    public static func replicatePad(_ x: Tensor, front: [Int], back: [Int]) -> Tensor {
        let (B, C, D, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let (Dp, Hp, Wp) = (D + front[0] + back[0], H + front[1] + back[1], W + front[2] + back[2])
        var out = Tensor(uninitialized: [B, C, Dp, Hp, Wp])
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                let src = xp.baseAddress!, dst = op.baseAddress!
                parallelFor(B * C) { range in
                    for bc in range {
                        for z in 0..<Dp {
                            let iz = min(max(z - front[0], 0), D - 1)
                            for y in 0..<Hp {
                                let iy = min(max(y - front[1], 0), H - 1)
                                let line = src + ((bc * D + iz) * H + iy) * W
                                let orow = dst + ((bc * Dp + z) * Hp + y) * Wp
                                for xx in 0..<Wp { orow[xx] = line[min(max(xx - front[2], 0), W - 1)] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// x[b, c, ...] += bias[c].
    public static func addChannelBias(_ x: inout Tensor, _ bias: Tensor) {
        let B = x.shape[0], C = x.shape[1], S = x.count / max(1, B * C)
        precondition(bias.count == C, "bias of \(bias.count) for \(C) channels")
        x.withUnsafeMutableBufferPointer { xp in
            bias.withUnsafeBufferPointer { bp in
                let base = xp.baseAddress!
                parallelFor(B * C) { range in
                    for bc in range {
                        let v = bp[bc % C]
                        let p = base + bc * S
                        for i in 0..<S { p[i] += v }
                    }
                }
            }
        }
    }

    // MARK: - normalisation and activations

    /// GroupNorm over (B, C, S...) followed, optionally, by `x*(1+scale[b,c]) + shift[b,c]` and SiLU.
    /// Statistics in Double; in place.
    public static func groupNorm(_ x: inout Tensor, groups: Int, eps: Float, weight: Tensor, bias: Tensor,
                                 scale: Tensor? = nil, shift: Tensor? = nil, silu: Bool) {
        let B = x.shape[0], C = x.shape[1], S = x.count / max(1, B * C)
        precondition(C % groups == 0 && weight.count == C && bias.count == C, "groupNorm: \(x.shape), \(groups) groups, weight \(weight.shape)")
        let cpg = C / groups
        x.withUnsafeMutableBufferPointer { xp in
            weight.withUnsafeBufferPointer { gp in
                bias.withUnsafeBufferPointer { bp in
                    let base = xp.baseAddress!
                    let sc = scale?.scalars, sh = shift?.scalars
                    parallelFor(B * groups) { range in
                        for bg in range {
                            let b = bg / groups, g = bg % groups
                            let p = base + (b * C + g * cpg) * S
                            let n = cpg * S
                            var sum = 0.0
                            var i = 0
                            while i < n {
                                let m = min(n, i + 4096)
                                var s: Float = 0
                                var v = SIMD8<Float>.zero
                                var j = i
                                while j + 8 <= m { v += UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self); j += 8 }
                                s = v.sum()
                                while j < m { s += p[j]; j += 1 }
                                sum += Double(s)
                                i = m
                            }
                            let mean = sum / Double(n)
                            var ss = 0.0
                            let mf = Float(mean)
                            i = 0
                            while i < n {
                                let m = min(n, i + 4096)
                                var v = SIMD8<Float>.zero
                                var j = i
                                while j + 8 <= m { let d = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self) - mf; v += d * d; j += 8 }
                                var s = v.sum()
                                while j < m { let d = p[j] - mf; s += d * d; j += 1 }
                                ss += Double(s)
                                i = m
                            }
                            let rstd = 1 / (ss / Double(n) + Double(eps)).squareRoot()
                            for cc in 0..<cpg {
                                let c = g * cpg + cc
                                var a = Float(rstd) * gp[c]
                                var o = bp[c] - Float(mean * rstd) * gp[c]
                                if let sc, let sh {
                                    let s1 = 1 + sc[b * C + c]
                                    a *= s1
                                    o = o * s1 + sh[b * C + c]
                                }
                                affine(p + cc * S, S, a, o, silu: silu)
                            }
                        }
                    }
                }
            }
        }
    }

    /// p[i] = act(p[i] * a + o).
    @inline(__always)
    static func affine(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ o: Float, silu: Bool) {
        var j = 0
        let raw = UnsafeMutableRawPointer(p)
        if silu {
            while j + 8 <= n {
                let v = (raw + 4 * j).loadUnaligned(as: SIMD8<Float>.self) * a + o
                (raw + 4 * j).storeBytes(of: v / (1 + fastExp(-v)), as: SIMD8<Float>.self)
                j += 8
            }
            while j < n { let v = p[j] * a + o; p[j] = v / (1 + Foundation.exp(-v)); j += 1 }
        } else {
            while j + 8 <= n {
                let v = (raw + 4 * j).loadUnaligned(as: SIMD8<Float>.self) * a + o
                (raw + 4 * j).storeBytes(of: v, as: SIMD8<Float>.self)
                j += 8
            }
            while j < n { p[j] = p[j] * a + o; j += 1 }
        }
    }

    /// exp for 8 lanes (Cephes polynomial, about 1 ulp); inputs clamped to ±88.
    @inline(__always)
    public static func fastExp(_ x0: SIMD8<Float>) -> SIMD8<Float> {
        var x = x0.clamped(lowerBound: SIMD8(repeating: -87.3), upperBound: SIMD8(repeating: 88.3))
        var fx = x * 1.44269504088896341 + 0.5
        fx.round(.down)
        x = x - fx * 0.693359375 + fx * 2.12194440e-4
        let z = x * x
        var y: SIMD8<Float> = SIMD8(repeating: 1.9875691500E-4)
        y = y * x + 1.3981999507E-3
        y = y * x + 8.3334519073E-3
        y = y * x + 4.1665795894E-2
        y = y * x + 1.6666665459E-1
        y = y * x + 5.0000001201E-1
        y = y * z + x + 1
        // 2^fx by building the exponent bits: fx + 127 + 2^23 holds fx + 127 in its low mantissa bits.
        let biased = unsafeBitCast(fx + 8_388_735, to: SIMD8<UInt32>.self) & 0x7FFFFF
        let pow2 = unsafeBitCast(biased &<< 23, to: SIMD8<Float>.self)
        return y * pow2
    }

    /// SiLU in place.
    public static func silu(_ x: inout Tensor) {
        x.withUnsafeMutableBufferPointer { p in
            let base = p.baseAddress!, n = p.count
            parallelFor(n / 4096 + 1) { r in
                let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
                if hi > lo { affine(base + lo, hi - lo, 1, 0, silu: true) }
            }
        }
    }

    /// Channel LayerNorm of the video-diffusion UNet: over C at each (b, position), gain only.
    public static func channelLayerNorm(_ x: Tensor, gamma: Tensor, eps: Float = 1e-5) -> Tensor {
        let B = x.shape[0], C = x.shape[1], S = x.count / max(1, B * C)
        precondition(gamma.count == C, "channelLayerNorm: gamma \(gamma.shape) for \(x.shape)")
        var out = Tensor(uninitialized: x.shape)
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                gamma.withUnsafeBufferPointer { gp in
                    let src = xp.baseAddress!, dst = op.baseAddress!
                    let block = 256
                    parallelFor(B * ((S + block - 1) / block)) { range in
                        var mean = [Float](repeating: 0, count: block)
                        var vars = [Float](repeating: 0, count: block)
                        let nb = (S + block - 1) / block
                        for task in range {
                            let b = task / nb, s0 = (task % nb) * block, n = min(block, S - s0)
                            let xs = src + b * C * S + s0, ys = dst + b * C * S + s0
                            for i in 0..<n { mean[i] = 0; vars[i] = 0 }
                            for c in 0..<C { let row = xs + c * S; for i in 0..<n { mean[i] += row[i] } }
                            for i in 0..<n { mean[i] /= Float(C) }
                            for c in 0..<C { let row = xs + c * S; for i in 0..<n { let d = row[i] - mean[i]; vars[i] += d * d } }
                            for i in 0..<n { vars[i] = 1 / (vars[i] / Float(C) + eps).squareRoot() }
                            for c in 0..<C {
                                let row = xs + c * S, orow = ys + c * S, g = gp[c]
                                for i in 0..<n { orow[i] = (row[i] - mean[i]) * vars[i] * g }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Elementwise a += b.
    public static func add(_ a: inout Tensor, _ b: Tensor) {
        precondition(a.count == b.count, "add: \(a.shape) + \(b.shape)")
        a.withUnsafeMutableBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                cblas_saxpy(Int32(ap.count), 1, bp.baseAddress!, 1, ap.baseAddress!, 1)
            }
        }
    }

    /// Concatenation along the channel axis (axis 1) of tensors with equal other dimensions.
    public static func concatChannels(_ a: Tensor, _ b: Tensor) -> Tensor {
        let B = a.shape[0]
        precondition(b.shape[0] == B && Array(a.shape.dropFirst(2)) == Array(b.shape.dropFirst(2)), "concat: \(a.shape) and \(b.shape)")
        let sa = a.count / B, sb = b.count / B
        var shape = a.shape
        shape[1] += b.shape[1]
        var out = Tensor(uninitialized: shape)
        out.withUnsafeMutableBufferPointer { op in
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    for i in 0..<B {
                        (op.baseAddress! + i * (sa + sb)).update(from: ap.baseAddress! + i * sa, count: sa)
                        (op.baseAddress! + i * (sa + sb) + sa).update(from: bp.baseAddress! + i * sb, count: sb)
                    }
                }
            }
        }
        return out
    }

    /// y = x Wᵀ + b for x (N, in), W (out, in).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let N = x.count / x.shape.last!, I = x.shape.last!, O = weight.shape[0]
        precondition(weight.shape == [O, I], "linear: input \(x.shape), weight \(weight.shape)")
        var out = Tensor(zeros: Array(x.shape.dropLast()) + [O])
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    sgemm(transA: false, transB: true, M: N, N: O, K: I, A: xp.baseAddress!, lda: I,
                          B: wp.baseAddress!, ldb: I, beta: 0, C: op.baseAddress!, ldc: O)
                    if let bias {
                        let bs = bias.scalars
                        for n in 0..<N { for o in 0..<O { op[n * O + o] += bs[o] } }
                    }
                }
            }
        }
        return out
    }
}
