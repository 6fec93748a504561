import COpenBLAS
import Foundation
import KernelsAVX512

/// Scratch memory of one Unet3D forward pass: one block of floats per worker, grown on demand and
/// reused by every attention block of the pass (and, through `UnetScratchPool`, by later passes).
final class UnetScratch {
    private(set) var blocks: [UnsafeMutablePointer<Float>] = []
    private(set) var capacity = 0

    /// Worker `w`'s block of at least `count` floats (contents undefined).
    func prepare(workers: Int, count: Int) {
        if count > capacity || workers > blocks.count {
            for b in blocks { b.deallocate() }
            capacity = max(count, capacity)
            // 64-byte aligned, like tensor storage: the AVX-512 tiles' rows start on cache lines.
            blocks = (0..<max(workers, blocks.count)).map { _ in
                UnsafeMutableRawPointer.allocate(byteCount: 4 * capacity, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
            }
        }
    }

    deinit { for b in blocks { b.deallocate() } }
}

/// Scratch blocks kept between forward passes; concurrent passes each take their own.
final class UnetScratchPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [UnetScratch] = []

    func take() -> UnetScratch {
        lock.lock(); defer { lock.unlock() }
        return free.popLast() ?? UnetScratch()
    }

    func give(_ s: UnetScratch) {
        lock.lock(); defer { lock.unlock() }
        if free.count < 4 { free.append(s) }
    }
}

/// Dynamic work sharing for the attention blocks: `workers` threads take task indices in turn, each
/// running its GEMMs through single-threaded OpenBLAS (no OpenBLAS threads spinning between the many
/// small GEMMs); the thread budget is `KernelContext.threads`.
enum UnetParallel {
    private final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var next = 0
        func take(below n: Int) -> Int? {
            lock.lock(); defer { lock.unlock() }
            guard next < n else { return nil }
            next += 1
            return next - 1
        }
    }

    static func run(tasks: Int, workers: Int, _ body: (_ task: Int, _ worker: Int) -> Void) {
        let w = min(workers, tasks)
        if w <= 1 {
            for t in 0..<tasks { body(t, 0) }
            return
        }
        let saved = BLASThreads.count
        if saved != 1 { BLASThreads.count = 1 }
        defer { if saved != 1 { BLASThreads.count = saved } }
        let counter = Counter()
        DispatchQueue.concurrentPerform(iterations: w) { worker in
            while let t = counter.take(below: tasks) { body(t, worker) }
        }
    }
}

/// The attention blocks of the video-diffusion UNet, each fused into one pass over tiles that stay
/// in cache: channel LayerNorm, the QKV projection (one GEMM per tile), the attention core, the
/// output projection and the residual add.
public enum UnetAttention {
    typealias P = UnsafeMutablePointer<Float>

    /// Channel LayerNorm (gain only, eps 1e-5) of `count` contiguous columns: `src[c·srcStride + i]`
    /// → `dst[c·dstStride + i]`, statistics over c at each column.
    @inline(__always)
    static func layerNormColumns(_ src: UnsafePointer<Float>, srcStride: Int, _ dst: P, dstStride: Int, channels C: Int,
                                 count: Int, gamma: UnsafePointer<Float>, eps: Float = 1e-5) {
        let rs = UnsafeRawPointer(src), rd = UnsafeMutableRawPointer(dst)
        let invC = Float(C)
        var i = 0
        while i + 8 <= count {
            var mean = SIMD8<Float>.zero
            for c in 0..<C { mean += rs.loadUnaligned(fromByteOffset: 4 * (c * srcStride + i), as: SIMD8<Float>.self) }
            mean /= invC
            var v = SIMD8<Float>.zero
            for c in 0..<C {
                let d = rs.loadUnaligned(fromByteOffset: 4 * (c * srcStride + i), as: SIMD8<Float>.self) - mean
                v += d * d
            }
            let rstd = 1 / (v / invC + eps).squareRoot()
            for c in 0..<C {
                let d = rs.loadUnaligned(fromByteOffset: 4 * (c * srcStride + i), as: SIMD8<Float>.self) - mean
                rd.storeBytes(of: d * rstd * gamma[c], toByteOffset: 4 * (c * dstStride + i), as: SIMD8<Float>.self)
            }
            i += 8
        }
        while i < count {
            var mean: Float = 0
            for c in 0..<C { mean += src[c * srcStride + i] }
            mean /= invC
            var v: Float = 0
            for c in 0..<C { let d = src[c * srcStride + i] - mean; v += d * d }
            let rstd = 1 / (v / invC + eps).squareRoot()
            for c in 0..<C { dst[c * dstStride + i] = (src[c * srcStride + i] - mean) * rstd * gamma[c] }
            i += 1
        }
    }

    @inline(__always)
    static func rowMax(_ r: UnsafePointer<Float>, _ n: Int) -> Float {
        let raw = UnsafeRawPointer(r)
        var m8 = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            m8 = m8.replacing(with: v, where: v .> m8)
            i += 8
        }
        var mx = -Float.infinity
        for l in 0..<8 { mx = max(mx, m8[l]) }
        while i < n { mx = max(mx, r[i]); i += 1 }
        return mx
    }

    @inline(__always)
    static func sgemm(_ transB: Bool = false, M: Int, N: Int, K: Int, A: UnsafePointer<Float>, lda: Int,
                      B: UnsafePointer<Float>, ldb: Int, beta: Float, C: P, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(M), Int32(N), Int32(K), 1,
                    A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
    }

    /// Session-5 fusions of the attention cores' per-element passes on the AVX-512 path, a bit mask
    /// (default 15; 0 = the session-4 cores; `tumorbench networks unet-ab --ab fused=0,15`):
    /// - bit 0 (`fusedTemporal`): the temporal head's rotary rotation runs in the q/k projection's
    ///   epilogue, the scale, bias and row maxima in the score tiles' epilogue, the 1/Σ in the value
    ///   tiles' epilogue (`UnetAttentionCore.gemmRotary`, `temporalHeadFused`): one pass over the
    ///   score tile (the exponentials) instead of six passes over q, k and the scores;
    /// - bit 1 (`deferredK`): the per-frame spatial linear attention leaves the k softmax's rows
    ///   unnormalised and scales the context's dh rows instead (`linearSoftmaxesDeferredK`).
    /// - bit 2 (`transposedK`): the per-frame spatial linear attention on whole 16-lane planes (24², 12²)
    ///   computes kᵀ (positions × features) straight from the projection (`gemmTN`), so the k softmax
    ///   runs 16 features per vector and the per-head contexts are 16-lane GEMMs (`gemm32`) instead of
    ///   dot products with horizontal sums (`gemmNT`) and OpenBLAS calls; k's 1/Σ scales the context.
    /// - bit 3 (`batchedTransposedK`): the same kᵀ formulation in the frame-batched spatial attention of
    ///   the 6² and 3² planes (`batchedHeadTransposedK`): k softmax per frame down kᵀ's columns instead of
    ///   row segments with horizontal reductions, no per-frame transpose of k.
    /// Initial value from `TUMORSTREAM_UNET_FUSED` if set.
    nonisolated(unsafe) public static var fusedPasses = knob("TUMORSTREAM_UNET_FUSED", default: 15)
    public static let fusedTemporal = 1, deferredK = 2, transposedK = 4, batchedTransposedK = 8

    // MARK: - spatial linear attention

    /// Floats of scratch per worker for `spatialLinear`.
    static func spatialScratch(channels C: Int, positions P: Int, heads: Int, dimHead: Int) -> Int {
        let hidden = heads * dimHead
        return C * P + 3 * hidden * P + dimHead * dimHead + C * hidden + 2 * P + dimHead
    }

    /// y = x + to_out(SpatialLinearAttention(LN(x))) for x (B, C, F, H·W): one task per (batch, frame).
    /// The output projection is folded into the context: y_f = x_f + b + (Σ_h Wo_h ctx_hᵀ) q_f.
    /// `y` must hold a copy of `x` on entry.
    static func spatialLinear(x: UnsafePointer<Float>, y: P, batch B: Int, channels C: Int, frames F: Int, positions Pn: Int,
                              gamma: UnsafePointer<Float>, wqkv: UnsafePointer<Float>, wout: UnsafePointer<Float>,
                              bout: UnsafePointer<Float>, heads: Int, dimHead dh: Int, folded: UnsafePointer<Float>? = nil,
                              keyTransposed: UnsafePointer<Float>? = nil, scratch: UnetScratch, workers: Int) {
        if useSpatialBatched(positions: Pn) {
            spatialLinearBatched(x: x, y: y, batch: B, channels: C, frames: F, positions: Pn, gamma: gamma, wqkv: wqkv, wout: wout,
                                 bout: bout, heads: heads, dimHead: dh, keyTransposed: keyTransposed, scratch: scratch, workers: workers)
            return
        }
        let hidden = heads * dh, N = F * Pn
        let scale = Float(1) / Float(dh).squareRoot()
        let w = min(workers, B * F)
        // AVX-512: the softmaxes, and the two projections when a frame is whole 16-lane groups.
        let avx = KernelContext.useAVX512, groups16 = avx && Pn % 16 == 0
        // With C ≤ dh (level 0) the value projection is folded in: ctx_h Wo_hᵀ = (k_h xnᵀ)(Wo_h Wv_h)ᵀ.
        let fold = C <= dh
        let computed = fold && folded == nil ? foldedOutputWeights(wqkv: wqkv, wout: wout, channels: C, heads: heads, dimHead: dh) : []
        let projRows = fold ? 2 * hidden : 3 * hidden
        let deferK = avx && fusedPasses & deferredK != 0
        let kT16 = groups16 && dh % 16 == 0 && fusedPasses & transposedK != 0
        // Wkᵀ (C × hidden) for kᵀ = xnᵀ Wkᵀ (`keyTransposed`: built at load).
        let wkTransposed = kT16 && keyTransposed == nil ? keyWeightsTransposed(wqkv: wqkv, channels: C, hidden: hidden) : []
        scratch.prepare(workers: max(1, w), count: spatialScratch(channels: C, positions: Pn, heads: heads, dimHead: dh))
        let blocks = scratch.blocks
        computed.withUnsafeBufferPointer { fp in
        wkTransposed.withUnsafeBufferPointer { wkp in
        let foldedW = fold ? (folded ?? UnsafePointer(fp.baseAddress!)) : nil
        UnetParallel.run(tasks: B * F, workers: w) { task, worker in
            let b = task / F, f = task % F
            let xn = blocks[worker]
            let qkv = xn + C * Pn
            let ctx = qkv + 3 * hidden * Pn
            let m = ctx + dh * dh
            let colMax = m + C * hidden
            let colSum = colMax + Pn
            let xf = x + b * C * N + f * Pn
            let yf = y + b * C * N + f * Pn
            layerNormColumns(xf, srcStride: N, xn, dstStride: Pn, channels: C, count: Pn, gamma: gamma)
            if kT16 {
                spatialHeadsTransposedK(xn: xn, qkv: qkv, ctx: ctx, m: m, kInverse: colMax, wqkv: wqkv, wkT: keyTransposed ?? wkp.baseAddress!,
                                        wout: wout, foldedW: foldedW, channels: C, positions: Pn, heads: heads, dimHead: dh, scale: scale)
            } else {
            if groups16 {
                UnetAttentionCore.gemm(M: projRows, N: Pn, K: C, a: wqkv, lda: C, b: xn, ldb: Pn, c: qkv, ldc: Pn,
                                       groupStride: 16, accumulate: false)
            } else {
                sgemm(M: projRows, N: Pn, K: C, A: wqkv, lda: C, B: xn, ldb: Pn, beta: 0, C: qkv, ldc: Pn)
            }
            for h in 0..<heads {
                let q = qkv + h * dh * Pn, k = qkv + (hidden + h * dh) * Pn, v = qkv + (2 * hidden + h * dh) * Pn
                if deferK {
                    // k rows stay exp(k − max); colMax[d] = 1/Σ scales the context's row d below.
                    UnetAttentionCore.linearSoftmaxesDeferredK(q: q, k: k, positions: Pn, dimHead: dh, scale: scale, kInverse: colMax)
                } else if avx {
                    UnetAttentionCore.linearSoftmaxes(q: q, k: k, positions: Pn, dimHead: dh, scale: scale)
                } else {
                    softmaxesPortable(q: q, k: k, positions: Pn, dimHead: dh, scale: scale, colMax: colMax, colSum: colSum)
                }
                // ctx[d][e] = Σ_n k[d][n] v[e][n]; m[:, h·dh + d] = Σ_e Wo[:, h·dh + e] ctx[d][e].
                if let foldedW {
                    // kx[d][c] = Σ_n k[d][n] xn[c][n]; m[:, h·dh + d] = Σ_c' A_h[:, c'] kx[d][c'].
                    if groups16 {
                        UnetAttentionCore.gemmNT(M: dh, N: C, K: Pn, a: k, lda: Pn, b: xn, ldb: Pn, c: ctx, ldc: C)
                    } else {
                        sgemm(true, M: dh, N: C, K: Pn, A: k, lda: Pn, B: xn, ldb: Pn, beta: 0, C: ctx, ldc: C)
                    }
                    if deferK { scaleRows(ctx, rows: dh, columns: C, by: colMax) }
                    sgemm(true, M: C, N: dh, K: C, A: foldedW + h * C, lda: heads * C, B: ctx, ldb: C, beta: 0, C: m + h * dh, ldc: hidden)
                } else {
                    if groups16 {
                        UnetAttentionCore.gemmNT(M: dh, N: dh, K: Pn, a: k, lda: Pn, b: v, ldb: Pn, c: ctx, ldc: dh)
                    } else {
                        sgemm(true, M: dh, N: dh, K: Pn, A: k, lda: Pn, B: v, ldb: Pn, beta: 0, C: ctx, ldc: dh)
                    }
                    if deferK { scaleRows(ctx, rows: dh, columns: dh, by: colMax) }
                    sgemm(true, M: C, N: dh, K: dh, A: wout + h * dh, lda: hidden, B: ctx, ldb: dh, beta: 0, C: m + h * dh, ldc: hidden)
                }
            }
            }
            for c in 0..<C {
                let row = yf + c * N, bv = bout[c]
                for i in 0..<Pn { row[i] += bv }
            }
            if groups16 {
                UnetAttentionCore.gemm(M: C, N: Pn, K: hidden, a: m, lda: hidden, b: qkv, ldb: Pn, c: yf, ldc: N,
                                       groupStride: 16, accumulate: true)
            } else {
                sgemm(M: C, N: Pn, K: hidden, A: m, lda: hidden, B: qkv, ldb: Pn, beta: 1, C: yf, ldc: N)
            }
        }
        }
        }
    }

    /// The heads of one frame of `spatialLinear` with kᵀ (AVX-512, Pn and dh multiples of 16): q rows (and
    /// v rows unless the value projection is folded) projected as usual, kᵀ = xnᵀ Wkᵀ (Pn × hidden) into
    /// the k rows' space; per head the feature softmax of q, the position softmax of kᵀ's columns with
    /// 1/Σ deferred to `kInverse`, ctxᵀ = (v or xn) · kᵀ_h scaled by column, and m_h = (Wo_h or A_h) · ctxᵀ.
    static func spatialHeadsTransposedK(xn: P, qkv: P, ctx: P, m: P, kInverse: P, wqkv: UnsafePointer<Float>,
                                        wkT: UnsafePointer<Float>, wout: UnsafePointer<Float>, foldedW: UnsafePointer<Float>?,
                                        channels C: Int, positions Pn: Int, heads: Int, dimHead dh: Int, scale: Float) {
        let hidden = heads * dh
        @inline(__always) func narrow(M: Int, K: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, c: P, ldc: Int) {
            if dh == 32 {
                UnetAttentionCore.gemm32(M: M, K: K, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
            } else {
                UnetAttentionCore.gemm(M: M, N: dh, K: K, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, groupStride: 16, accumulate: false)
            }
        }
        UnetAttentionCore.gemm(M: hidden, N: Pn, K: C, a: wqkv, lda: C, b: xn, ldb: Pn, c: qkv, ldc: Pn, groupStride: 16, accumulate: false)
        let kT = qkv + hidden * Pn
        UnetAttentionCore.gemmTN(M: Pn, N: hidden, K: C, a: xn, lda: Pn, b: wkT, ldb: hidden, c: kT, ldc: hidden)
        if foldedW == nil {
            UnetAttentionCore.gemm(M: hidden, N: Pn, K: C, a: wqkv + 2 * hidden * C, lda: C, b: xn, ldb: Pn, c: qkv + 2 * hidden * Pn,
                                   ldc: Pn, groupStride: 16, accumulate: false)
        }
        for h in 0..<heads {
            let q = qkv + h * dh * Pn, kh = kT + h * dh
            UnetAttentionBatchedCore.featureSoftmax(q: q, stride: Pn, columns: Pn, dimHead: dh, scale: scale)
            UnetAttentionCore.columnSoftmaxDeferred(k: kh, rows: Pn, stride: hidden, groups: dh / 16, inverse: kInverse)
            if let foldedW {
                // ctxᵀ[c][d] = Σ_n xn[c][n] kᵀ[n][d] / Σ_d; m[:, h·dh + d] = Σ_c' A_h[:, c'] ctxᵀ[c'][d].
                narrow(M: C, K: Pn, a: xn, lda: Pn, b: kh, ldb: hidden, c: ctx, ldc: dh)
                scaleColumns(ctx, rows: C, columns: dh, by: kInverse)
                narrow(M: C, K: C, a: foldedW + h * C, lda: heads * C, b: ctx, ldb: dh, c: m + h * dh, ldc: hidden)
            } else {
                // ctxᵀ[e][d] = Σ_n v[e][n] kᵀ[n][d] / Σ_d; m[:, h·dh + d] = Σ_e Wo[:, h·dh + e] ctxᵀ[e][d].
                narrow(M: dh, K: Pn, a: qkv + (2 * hidden + h * dh) * Pn, lda: Pn, b: kh, ldb: hidden, c: ctx, ldc: dh)
                scaleColumns(ctx, rows: dh, columns: dh, by: kInverse)
                narrow(M: C, K: dh, a: wout + h * dh, lda: hidden, b: ctx, ldb: dh, c: m + h * dh, ldc: hidden)
            }
        }
    }

    /// Knob: true (default) the spatial linear attention blocks build Wkᵀ (`keyWeightsTransposed`) once at
    /// load; false every call rebuilds it (the previous code). Knob `wkt` of `tumorbench networks unet-ab`.
    nonisolated(unsafe) public static var cacheKeyWeightsTransposed = true

    /// `keyWeightsTransposed` of a block's `to_qkv` weight (3·hidden × C).
    static func keyWeightsTransposed(toQKV: Tensor, channels C: Int, hidden: Int) -> [Float] {
        precondition(toQKV.count == 3 * hidden * C, "keyWeightsTransposed: to_qkv \(toQKV.shape) for \(C) channels, hidden \(hidden)")
        return toQKV.withUnsafeBufferPointer { keyWeightsTransposed(wqkv: $0.baseAddress!, channels: C, hidden: hidden) }
    }

    /// Wkᵀ (C × hidden): row c holds W_k[·][c], W_k being rows hidden ..< 2·hidden of `wqkv` (3·hidden × C).
    static func keyWeightsTransposed(wqkv: UnsafePointer<Float>, channels C: Int, hidden: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: C * hidden) { out, n in
            let wk = wqkv + hidden * C
            for c in 0..<C {
                let row = out.baseAddress! + c * hidden
                for r in 0..<hidden { row[r] = wk[r * C + c] }
            }
            n = C * hidden
        }
    }

    /// m[·][c] ×= f[c] for the `rows` × `columns` row-major matrix m.
    @inline(__always)
    static func scaleColumns(_ m: P, rows: Int, columns: Int, by f: UnsafePointer<Float>) {
        for r in 0..<rows {
            let row = m + r * columns
            for c in 0..<columns { row[c] *= f[c] }
        }
    }

    /// m[r][·] ×= f[r] for the `rows` × `columns` row-major matrix m.
    @inline(__always)
    static func scaleRows(_ m: P, rows: Int, columns: Int, by f: UnsafePointer<Float>) {
        for r in 0..<rows {
            let row = m + r * columns, v = f[r]
            for c in 0..<columns { row[c] *= v }
        }
    }

    /// The two softmaxes of one head of the spatial linear attention (portable SIMD8 code), in place
    /// on rows of `n` positions: q over the dh features at each position (× scale), k over the positions.
    static func softmaxesPortable(q: P, k: P, positions Pn: Int, dimHead dh: Int, scale: Float, colMax: P, colSum: P) {
        featureSoftmaxPortable(q: q, stride: Pn, columns: Pn, dimHead: dh, scale: scale, colMax: colMax, colSum: colSum)
        // k: softmax over positions for each feature.
        for d in 0..<dh {
            let r = k + d * Pn
            let mx = rowMax(r, Pn)
            let inv = 1 / AttentionOps.expInPlace(r, Pn, subtract: mx)
            AttentionOps.vscale(r, inv, Pn)
        }
    }

    /// q's softmax over its `dh` feature rows (row stride `stride`) at each of `columns` columns, × scale,
    /// in place (portable SIMD8 code); `colMax` and `colSum` hold `columns` floats of scratch.
    static func featureSoftmaxPortable(q: P, stride: Int, columns: Int, dimHead dh: Int, scale: Float, colMax: P, colSum: P) {
        colMax.update(from: q, count: columns)
        for d in 1..<dh { AttentionOps.vmax(colMax, q + d * stride, columns) }
        colSum.update(repeating: 0, count: columns)
        for d in 0..<dh {
            let r = q + d * stride
            _ = AttentionOps.expInPlace(r, columns, subtract: 0, minus: colMax)
            AttentionOps.vadd(colSum, r, columns)
        }
        for n in 0..<columns { colSum[n] = scale / colSum[n] }
        for d in 0..<dh { AttentionOps.vmul(q + d * stride, colSum, columns) }
    }

    // MARK: - softmax attention along frames

    /// Positions per tile of `temporal` (one SIMD8 lane per position).
    static let lanes = 8

    static func temporalScratch(channels C: Int, frames F: Int, heads: Int, dimHead: Int) -> Int {
        let T = F * lanes, hidden = heads * dimHead
        return C * T + 3 * hidden * T + hidden * T + F * F * lanes + C * T
    }

    /// y = x + to_out(Attention(LN(x))) along F at each of the P positions of x (B, C, F, P), with
    /// rotary embedding of q and k and an additive bias (heads, F, F). One task per (batch, tile of 8
    /// positions); the attention core runs with the 8 positions in SIMD lanes, so q, k, v stay in the
    /// GEMM's channel-major layout. `y` must hold a copy of `x` on entry.
    static func temporal(x: UnsafePointer<Float>, y: P, batch B: Int, channels C: Int, frames F: Int, positions Pn: Int,
                         gamma: UnsafePointer<Float>, wqkv: UnsafePointer<Float>, wout: UnsafePointer<Float>,
                         heads: Int, dimHead dh: Int, rotary: AttentionOps.Rotary?, bias: UnsafePointer<Float>?,
                         folded: UnsafePointer<Float>? = nil, scratch: UnetScratch, workers: Int) {
        let groups = headGroups(tasks: B * ((Pn + (KernelContext.useAVX512 ? UnetAttentionCore.lanes : lanes) - 1)
                                            / (KernelContext.useAVX512 ? UnetAttentionCore.lanes : lanes)),
                                heads: heads, workers: workers)
        if groups > 1 {
            temporalSplit(x: x, y: y, batch: B, channels: C, frames: F, positions: Pn, gamma: gamma, wqkv: wqkv, wout: wout,
                          heads: heads, dimHead: dh, rotary: rotary, bias: bias, folded: folded, groups: groups,
                          scratch: scratch, workers: workers)
            return
        }
        if KernelContext.useAVX512 {
            temporal16(x: x, y: y, batch: B, channels: C, frames: F, positions: Pn, gamma: gamma, wqkv: wqkv, wout: wout,
                       heads: heads, dimHead: dh, rotary: rotary, bias: bias, folded: folded, scratch: scratch, workers: workers)
            return
        }
        let L = lanes, T = F * L, hidden = heads * dh, N = F * Pn
        let tiles = (Pn + L - 1) / L
        let scale = Float(1) / Float(dh).squareRoot()
        let w = min(workers, B * tiles)
        scratch.prepare(workers: max(1, w), count: temporalScratch(channels: C, frames: F, heads: heads, dimHead: dh))
        let blocks = scratch.blocks
        let pairs = rotary.map { min($0.pairs, dh / 2) } ?? 0
        UnetParallel.run(tasks: B * tiles, workers: w) { task, worker in
            let b = task / tiles, p0 = (task % tiles) * L, n = min(L, Pn - p0)
            let xn = blocks[worker]
            let qkv = xn + C * T
            let o = qkv + 3 * hidden * T
            let s = o + hidden * T
            let tmp = s + F * F * L
            let xb = x + b * C * N + p0, yb = y + b * C * N + p0
            // LayerNorm of the tile: columns (f, lane) of xn; lanes past the edge are zero.
            for f in 0..<F {
                if n == L {
                    layerNormColumns(xb + f * Pn, srcStride: N, xn + f * L, dstStride: T, channels: C, count: L, gamma: gamma)
                } else {
                    layerNormColumns(xb + f * Pn, srcStride: N, xn + f * L, dstStride: T, channels: C, count: n, gamma: gamma)
                    for c in 0..<C { (xn + c * T + f * L + n).update(repeating: 0, count: L - n) }
                }
            }
            sgemm(M: 3 * hidden, N: T, K: C, A: wqkv, lda: C, B: xn, ldb: T, beta: 0, C: qkv, ldc: T)
            for h in 0..<heads {
                temporalHead8(qkv: qkv, o: o, s: s, frames: F, heads: heads, dimHead: dh, head: h, scale: scale,
                              rotary: rotary, pairs: pairs, bias: bias)
            }
            // y += Wo · o, scattered back into the tile's columns.
            sgemm(M: C, N: T, K: hidden, A: wout, lda: hidden, B: o, ldb: T, beta: 0, C: tmp, ldc: T)
            for c in 0..<C {
                for f in 0..<F {
                    let dst = yb + c * N + f * Pn, src = tmp + c * T + f * L
                    for l in 0..<n { dst[l] += src[l] }
                }
            }
        }
    }

    /// One head of the portable temporal attention core (8-lane tiles): q, k, v of head `h` in the tile
    /// layout of `qkv` (rows T = 8F floats apart), output rows h·dh ..< (h + 1)·dh of `o` (same layout).
    static func temporalHead8(qkv: P, o: P, s: P, frames F: Int, heads: Int, dimHead dh: Int, head h: Int, scale: Float,
                              rotary: AttentionOps.Rotary?, pairs: Int, bias: UnsafePointer<Float>?) {
        let L = lanes, T = F * L, hidden = heads * dh
        let raw = UnsafeMutableRawPointer(qkv), sRaw = UnsafeMutableRawPointer(s), oRaw = UnsafeMutableRawPointer(o)
        @inline(__always) func ld(_ row: Int, _ t: Int) -> SIMD8<Float> {
            raw.loadUnaligned(fromByteOffset: 4 * (row * T + t * L), as: SIMD8<Float>.self)
        }
        @inline(__always) func st(_ v: SIMD8<Float>, _ row: Int, _ t: Int) {
            raw.storeBytes(of: v, toByteOffset: 4 * (row * T + t * L), as: SIMD8<Float>.self)
        }
        let qr = h * dh, kr = hidden + h * dh, vr = 2 * hidden + h * dh
        // q × scale, then the rotary embedding of q and k (pairs (2i, 2i+1) of features).
        for d in 0..<dh { for t in 0..<F { st(ld(qr + d, t) * scale, qr + d, t) } }
        if let r = rotary {
            for t in 0..<F {
                for i in 0..<pairs {
                    let c = r.cos[t * r.pairs + i], sn = r.sin[t * r.pairs + i]
                    let q0 = ld(qr + 2 * i, t), q1 = ld(qr + 2 * i + 1, t)
                    st(q0 * c + (-q1) * sn, qr + 2 * i, t)
                    st(q1 * c + q0 * sn, qr + 2 * i + 1, t)
                    let k0 = ld(kr + 2 * i, t), k1 = ld(kr + 2 * i + 1, t)
                    st(k0 * c + (-k1) * sn, kr + 2 * i, t)
                    st(k1 * c + k0 * sn, kr + 2 * i + 1, t)
                }
            }
        }
        // sim[i][j] = q_i · k_j (+ bias), softmax over j.
        for i in 0..<F {
            var j = 0
            while j + 4 <= F {
                var a0 = SIMD8<Float>.zero, a1 = a0, a2 = a0, a3 = a0
                for d in 0..<dh {
                    let qv = ld(qr + d, i)
                    a0 += qv * ld(kr + d, j); a1 += qv * ld(kr + d, j + 1)
                    a2 += qv * ld(kr + d, j + 2); a3 += qv * ld(kr + d, j + 3)
                }
                sRaw.storeBytes(of: a0, toByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                sRaw.storeBytes(of: a1, toByteOffset: 4 * ((i * F + j + 1) * L), as: SIMD8<Float>.self)
                sRaw.storeBytes(of: a2, toByteOffset: 4 * ((i * F + j + 2) * L), as: SIMD8<Float>.self)
                sRaw.storeBytes(of: a3, toByteOffset: 4 * ((i * F + j + 3) * L), as: SIMD8<Float>.self)
                j += 4
            }
            while j < F {
                var a0 = SIMD8<Float>.zero
                for d in 0..<dh { a0 += ld(qr + d, i) * ld(kr + d, j) }
                sRaw.storeBytes(of: a0, toByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                j += 1
            }
            var mx = SIMD8<Float>(repeating: -.infinity)
            for j in 0..<F {
                var v = sRaw.loadUnaligned(fromByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                if let bias { v += bias[(h * F + i) * F + j] }
                sRaw.storeBytes(of: v, toByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                mx = mx.replacing(with: v, where: v .> mx)
            }
            var sum = SIMD8<Float>.zero
            for j in 0..<F {
                let e = NetworkOps.fastExp(sRaw.loadUnaligned(fromByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self) - mx)
                sRaw.storeBytes(of: e, toByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                sum += e
            }
            let inv = 1 / sum
            for j in 0..<F {
                let e = sRaw.loadUnaligned(fromByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                sRaw.storeBytes(of: e * inv, toByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
            }
        }
        // o[e][i] = Σ_j p[i][j] v[e][j].
        for i in 0..<F {
            var e = 0
            while e + 4 <= dh {
                var a0 = SIMD8<Float>.zero, a1 = a0, a2 = a0, a3 = a0
                for j in 0..<F {
                    let p = sRaw.loadUnaligned(fromByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self)
                    a0 += p * ld(vr + e, j); a1 += p * ld(vr + e + 1, j)
                    a2 += p * ld(vr + e + 2, j); a3 += p * ld(vr + e + 3, j)
                }
                oRaw.storeBytes(of: a0, toByteOffset: 4 * ((qr + e) * T + i * L), as: SIMD8<Float>.self)
                oRaw.storeBytes(of: a1, toByteOffset: 4 * ((qr + e + 1) * T + i * L), as: SIMD8<Float>.self)
                oRaw.storeBytes(of: a2, toByteOffset: 4 * ((qr + e + 2) * T + i * L), as: SIMD8<Float>.self)
                oRaw.storeBytes(of: a3, toByteOffset: 4 * ((qr + e + 3) * T + i * L), as: SIMD8<Float>.self)
                e += 4
            }
            while e < dh {
                var a0 = SIMD8<Float>.zero
                for j in 0..<F { a0 += sRaw.loadUnaligned(fromByteOffset: 4 * ((i * F + j) * L), as: SIMD8<Float>.self) * ld(vr + e, j) }
                oRaw.storeBytes(of: a0, toByteOffset: 4 * ((qr + e) * T + i * L), as: SIMD8<Float>.self)
                e += 1
            }
        }
    }

    /// `temporal` on AVX-512 (module `KernelsAVX512`): tiles of 16 positions, the projections as
    /// 16-column-group GEMMs (the output projection adds straight into `y` for whole tiles) and the
    /// attention core of each head in `UnetAttentionCore.temporalHead`. Same contract as `temporal`.
    static func temporal16(x: UnsafePointer<Float>, y: P, batch B: Int, channels C: Int, frames F: Int, positions Pn: Int,
                           gamma: UnsafePointer<Float>, wqkv: UnsafePointer<Float>, wout: UnsafePointer<Float>,
                           heads: Int, dimHead dh: Int, rotary: AttentionOps.Rotary?, bias: UnsafePointer<Float>?,
                           folded: UnsafePointer<Float>? = nil, scratch: UnetScratch, workers: Int) {
        let L = UnetAttentionCore.lanes, T = F * L, hidden = heads * dh, N = F * Pn
        let tiles = (Pn + L - 1) / L
        let scale = Float(1) / Float(dh).squareRoot()
        let w = min(workers, B * tiles)
        // With C ≤ dh (level 0) the value projection is folded into the output projection: the heads
        // attend over the normalised input itself (C rows) and y += Σ_h (Wo_h Wv_h) o_h.
        let fold = C <= dh
        let computed = fold && folded == nil ? foldedOutputWeights(wqkv: wqkv, wout: wout, channels: C, heads: heads, dimHead: dh) : []
        let projRows = fold ? 2 * hidden : 3 * hidden, valueRows = fold ? C : dh, outK = heads * valueRows
        scratch.prepare(workers: max(1, w), count: C * T + 3 * hidden * T + hidden * T + F * F * L + C * T
                            + UnetAttentionCore.fusedHeadStats(frames: F))
        let blocks = scratch.blocks
        let fused = fusedPasses & fusedTemporal != 0 && dh % 8 == 0
        let pairs = rotary.map { min($0.pairs, dh / 2) } ?? 0
        let cosT = rotary?.cos ?? [], sinT = rotary?.sin ?? []
        cosT.withUnsafeBufferPointer { cp in
          sinT.withUnsafeBufferPointer { sp in
            computed.withUnsafeBufferPointer { fp in
                let cosP = rotary == nil ? nil : cp.baseAddress, sinP = rotary == nil ? nil : sp.baseAddress
                let tablePairs = rotary?.pairs ?? 0
                let wo = fold ? (folded ?? UnsafePointer(fp.baseAddress!)) : wout
                UnetParallel.run(tasks: B * tiles, workers: w) { task, worker in
                    let b = task / tiles, p0 = (task % tiles) * L, n = min(L, Pn - p0)
                    let xn = blocks[worker]
                    let qkv = xn + C * T
                    let o = qkv + 3 * hidden * T
                    let s = o + hidden * T
                    let tmp = s + F * F * L
                    let xb = x + b * C * N + p0, yb = y + b * C * N + p0
                    for f in 0..<F {
                        layerNormColumns(xb + f * Pn, srcStride: N, xn + f * L, dstStride: T, channels: C, count: n, gamma: gamma)
                        if n < L { for c in 0..<C { (xn + c * T + f * L + n).update(repeating: 0, count: L - n) } }
                    }
                    if fused {
                        projectRotated(wqkv: wqkv, rows: 2 * hidden, channels: C, xn: xn, T: T, qk: qkv, dimHead: dh,
                                       cos: cosP, sin: sinP, tablePairs: tablePairs, pairs: pairs)
                        if !fold {
                            UnetAttentionCore.gemm(M: hidden, N: T, K: C, a: wqkv + 2 * hidden * C, lda: C, b: xn, ldb: T,
                                                   c: qkv + 2 * hidden * T, ldc: T, groupStride: L, accumulate: false)
                        }
                        let stats = tmp + C * T
                        for h in 0..<heads {
                            UnetAttentionCore.temporalHeadFused(q: qkv + h * dh * T, k: qkv + (hidden + h * dh) * T,
                                                                v: fold ? xn : qkv + (2 * hidden + h * dh) * T,
                                                                frames: F, dimHead: dh, valueRows: valueRows, out: o + h * valueRows * T,
                                                                scale: scale, bias: bias.map { $0 + h * F * F }, s: s, stats: stats)
                        }
                    } else {
                    UnetAttentionCore.gemm(M: projRows, N: T, K: C, a: wqkv, lda: C, b: xn, ldb: T, c: qkv, ldc: T,
                                           groupStride: L, accumulate: false)
                    for h in 0..<heads {
                        UnetAttentionCore.temporalHead(q: qkv + h * dh * T, k: qkv + (hidden + h * dh) * T,
                                                       v: fold ? xn : qkv + (2 * hidden + h * dh) * T,
                                                       frames: F, dimHead: dh, valueRows: valueRows, out: o + h * valueRows * T,
                                                       scale: scale, cos: cosP, sin: sinP, tablePairs: tablePairs, pairs: pairs,
                                                       bias: bias.map { $0 + h * F * F }, s: s)
                    }
                    }
                    if n == L {
                        // Column group f of the tile is frame f: y[c][f·Pn + p0 ..< +16] += (Wo · o)[c][16f ..< 16f + 16].
                        UnetAttentionCore.gemm(M: C, N: T, K: outK, a: wo, lda: outK, b: o, ldb: T, c: yb, ldc: N,
                                               groupStride: Pn, accumulate: true)
                    } else {
                        UnetAttentionCore.gemm(M: C, N: T, K: outK, a: wo, lda: outK, b: o, ldb: T, c: tmp, ldc: T,
                                               groupStride: L, accumulate: false)
                        for c in 0..<C {
                            for f in 0..<F {
                                let dst = yb + c * N + f * Pn, src = tmp + c * T + f * L
                                for l in 0..<n { dst[l] += src[l] }
                            }
                        }
                    }
                }
            }
          }
        }
    }

    /// q and k rows (`rows` = 2·hidden, or a head group's rows starting at a head) of a temporal tile
    /// `qk` = W · xn with the rotary rotation of frame f applied to column group f (AVX-512 only).
    static func projectRotated(wqkv: UnsafePointer<Float>, rows: Int, channels C: Int, xn: UnsafePointer<Float>, T: Int, qk: P,
                               dimHead dh: Int, cos: UnsafePointer<Float>?, sin: UnsafePointer<Float>?, tablePairs: Int, pairs: Int) {
        if let cos, let sin, pairs > 0 {
            UnetAttentionCore.gemmRotary(M: rows, N: T, K: C, a: wqkv, lda: C, b: xn, ldb: T, c: qk, ldc: T, dimHead: dh,
                                         cos: cos, sin: sin, tablePairs: tablePairs, pairs: pairs)
        } else {
            UnetAttentionCore.gemm(M: rows, N: T, K: C, a: wqkv, lda: C, b: xn, ldb: T, c: qk, ldc: T, groupStride: 16, accumulate: false)
        }
    }

    /// Knob: 1 (default) the attention structs fold the output weights once at load; 0 every call folds them.
    nonisolated(unsafe) public static var cacheFoldedWeights = 1

    /// `foldedOutputWeights` of a block's weight tensors if its value projection gets folded (C ≤ dh), else nil.
    static func foldedOutputWeights(toQKV: Tensor, toOut: Tensor, channels C: Int, heads: Int) -> [Float]? {
        let dh = toOut.count / C / heads
        guard C <= dh else { return nil }
        return toQKV.withUnsafeBufferPointer { wq in
            toOut.withUnsafeBufferPointer { wo in
                foldedOutputWeights(wqkv: wq.baseAddress!, wout: wo.baseAddress!, channels: C, heads: heads, dimHead: dh)
            }
        }
    }

    /// The output projection with the value projection folded in: A[c][h·C + c'] = Σ_e Wo[c][h·dh + e] ·
    /// Wv[h·dh + e][c'] (C × heads·C), Wv being rows 2·heads·dh ..< 3·heads·dh of `wqkv`.
    static func foldedOutputWeights(wqkv: UnsafePointer<Float>, wout: UnsafePointer<Float>, channels C: Int, heads: Int,
                                    dimHead dh: Int) -> [Float] {
        let hidden = heads * dh
        var a = [Float](repeating: 0, count: C * heads * C)
        a.withUnsafeMutableBufferPointer { ap in
            for h in 0..<heads {
                for e in 0..<dh {
                    let wv = wqkv + (2 * hidden + h * dh + e) * C
                    for c in 0..<C {
                        let wo = wout[c * hidden + h * dh + e], row = ap.baseAddress! + c * heads * C + h * C
                        for c2 in 0..<C { row[c2] += wo * wv[c2] }
                    }
                }
            }
        }
        return a
    }
}

extension Unet3D {
    /// Residual(PreNorm(SpatialLinearAttention)) of the video-diffusion UNet on x (B, C, F, H, W):
    /// `gamma` (C) or (1, C, 1, 1, 1), `toQKV` (3·heads·dh, C[, 1, 1]), `toOut` (C, heads·dh[, 1, 1]), `toOutBias` (C).
    public static func spatialLinearAttentionBlock(_ x: Tensor, gamma: Tensor, toQKV: Tensor, toOut: Tensor, toOutBias: Tensor,
                                                   heads: Int) -> Tensor {
        spatialLinearAttentionBlock(x, gamma: gamma, toQKV: toQKV, toOut: toOut, toOutBias: toOutBias, heads: heads, scratch: UnetScratch())
    }

    /// `folded`: `UnetAttention.foldedOutputWeights` of these weights (computed per call if nil);
    /// `keyTransposed`: `UnetAttention.keyWeightsTransposed` of `toQKV` (built per call where needed if nil).
    static func spatialLinearAttentionBlock(_ x: Tensor, gamma: Tensor, toQKV: Tensor, toOut: Tensor, toOutBias: Tensor,
                                            heads: Int, folded: [Float]? = nil, keyTransposed: [Float]? = nil,
                                            scratch: UnetScratch) -> Tensor {
        precondition(x.rank == 5, "spatialLinearAttentionBlock: x \(x.shape) must be 5-D")
        let (B, C, F, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let hidden = toOut.count / C
        precondition(gamma.count == C && toQKV.count == 3 * hidden * C && hidden % heads == 0 && toOutBias.count == C,
                     "spatialLinearAttentionBlock: weights \(gamma.shape) \(toQKV.shape) \(toOut.shape) for x \(x.shape), \(heads) heads")
        var out = x
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                gamma.withUnsafeBufferPointer { g in
                    toQKV.withUnsafeBufferPointer { wq in
                        toOut.withUnsafeBufferPointer { wo in
                            toOutBias.withUnsafeBufferPointer { bo in
                                let run = { (fp: UnsafePointer<Float>?, kp: UnsafePointer<Float>?) in
                                    UnetAttention.spatialLinear(x: xp.baseAddress!, y: op.baseAddress!, batch: B, channels: C, frames: F,
                                                                positions: H * W, gamma: g.baseAddress!, wqkv: wq.baseAddress!,
                                                                wout: wo.baseAddress!, bout: bo.baseAddress!, heads: heads, dimHead: hidden / heads,
                                                                folded: fp, keyTransposed: kp, scratch: scratch, workers: KernelContext.threads)
                                }
                                let withKey = { (fp: UnsafePointer<Float>?) in
                                    if let keyTransposed {
                                        precondition(keyTransposed.count == C * hidden, "spatialLinearAttentionBlock: Wkᵀ of \(keyTransposed.count) floats")
                                        keyTransposed.withUnsafeBufferPointer { run(fp, $0.baseAddress!) }
                                    } else { run(fp, nil) }
                                }
                                if let folded { folded.withUnsafeBufferPointer { withKey($0.baseAddress!) } } else { withKey(nil) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Residual(PreNorm(Attention along D)) of the video-diffusion UNet on x (B, C, F, H, W): softmax
    /// attention over the F frames at each (h, w), q and k rotated with `freqs` (rotary embedding,
    /// pairs of features), plus `bias` (heads, F, F) if given. `toQKV` (3·heads·dh, C), `toOut` (C, heads·dh).
    public static func temporalAttentionBlock(_ x: Tensor, gamma: Tensor, toQKV: Tensor, toOut: Tensor, heads: Int,
                                              freqs: [Float]?, bias: [Float]?) -> Tensor {
        temporalAttentionBlock(x, gamma: gamma, toQKV: toQKV, toOut: toOut, heads: heads, freqs: freqs, bias: bias, scratch: UnetScratch())
    }

    static func temporalAttentionBlock(_ x: Tensor, gamma: Tensor, toQKV: Tensor, toOut: Tensor, heads: Int,
                                       freqs: [Float]?, bias: [Float]?, folded: [Float]? = nil, scratch: UnetScratch) -> Tensor {
        precondition(x.rank == 5, "temporalAttentionBlock: x \(x.shape) must be 5-D")
        let (B, C, F, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let hidden = toOut.count / C
        precondition(gamma.count == C && toQKV.count == 3 * hidden * C && hidden % heads == 0,
                     "temporalAttentionBlock: weights \(gamma.shape) \(toQKV.shape) \(toOut.shape) for x \(x.shape), \(heads) heads")
        precondition(bias == nil || bias!.count == heads * F * F, "temporalAttentionBlock: bias of \(bias!.count) for \(heads)×\(F)×\(F)")
        var out = x
        let rotary = freqs.map { AttentionOps.Rotary(freqs: $0, positions: F) }
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                gamma.withUnsafeBufferPointer { g in
                    toQKV.withUnsafeBufferPointer { wq in
                        toOut.withUnsafeBufferPointer { wo in
                            let run = { (bp: UnsafePointer<Float>?, fp: UnsafePointer<Float>?) in
                                UnetAttention.temporal(x: xp.baseAddress!, y: op.baseAddress!, batch: B, channels: C, frames: F,
                                                       positions: H * W, gamma: g.baseAddress!, wqkv: wq.baseAddress!, wout: wo.baseAddress!,
                                                       heads: heads, dimHead: hidden / heads, rotary: rotary, bias: bp,
                                                       folded: fp, scratch: scratch, workers: KernelContext.threads)
                            }
                            let withFolded = { (bp: UnsafePointer<Float>?) in
                                if let folded { folded.withUnsafeBufferPointer { run(bp, $0.baseAddress!) } } else { run(bp, nil) }
                            }
                            if let bias { bias.withUnsafeBufferPointer { withFolded($0.baseAddress!) } } else { withFolded(nil) }
                        }
                    }
                }
            }
        }
        return out
    }
}
