import COpenBLAS
import Foundation
import KernelsAVX512

/// The attention blocks at the Unet's small levels (planes of 12², 6², 3² positions), where one task
/// per frame (spatial) or per tile of positions (temporal) leaves SIMD lanes empty and workers idle:
/// the spatial linear attention batches the columns of every frame into each projection GEMM, the
/// temporal attention splits the heads of a tile over tasks with a second phase for the output
/// projection. Knobs (`tumorbench networks unet-ab`) keep the session-3 paths selectable.
extension UnetAttention {
    /// Spatial linear attention path: 0 one task per frame (session 3); 1 (default) batched over the
    /// frames for planes that are not whole 16-lane groups; 2 batched for every plane. Initial value
    /// from `TUMORSTREAM_UNET_SPATIAL` if set (for `tumorbench networks unet-profile`).
    nonisolated(unsafe) public static var spatialBatched = knob("TUMORSTREAM_UNET_SPATIAL", default: 1)

    /// Head groups of the temporal attention: 0 (default) automatic, split only when there are fewer
    /// tiles than workers (the 3×3 planes: one tile); k ≥ 1 exactly min(k, heads) groups; 1 the fused
    /// session-3 path. Paired A/B of 0 against 1: 1.01–1.03 while the process had about one core (other
    /// builds running), 0.982 and 0.985 with both cores free (2 groups everywhere: 1.040). −1: as 0, and
    /// also split (into `workers` groups) when there are fewer than 2·workers tiles that do not divide
    /// evenly (the 6×6 planes). Initial value from `TUMORSTREAM_UNET_THEADS`.
    nonisolated(unsafe) public static var temporalHeadGroups = knob("TUMORSTREAM_UNET_THEADS", default: 0)

    static func knob(_ name: String, default d: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) } ?? d
    }

    /// AVX-512 context of the batched spatial attention: 1 (default) a 16-lane GEMM with k transposed,
    /// 0 dot products of zero-padded rows (`gemmNT`). Initial value from `TUMORSTREAM_UNET_SPATIAL_CTX`.
    nonisolated(unsafe) public static var spatialContextKernel = knob("TUMORSTREAM_UNET_SPATIAL_CTX", default: 1)

    /// The knobs at once: the session-4 defaults (`true`) or the session-3 paths.
    public static func sessionDefaults(_ on: Bool) {
        spatialBatched = on ? 1 : 0
        spatialContextKernel = on ? 1 : 0
        temporalHeadGroups = on ? 0 : 1
        cacheFoldedWeights = on ? 1 : 0
    }

    static func useSpatialBatched(positions Pn: Int) -> Bool {
        switch spatialBatched {
        case 0: return false
        case 1: return Pn % 16 != 0
        default: return true
        }
    }

    /// Head groups for `tasks` tiles (over the batch) on `workers` threads.
    public static func headGroups(tasks: Int, heads: Int, workers: Int) -> Int {
        if temporalHeadGroups > 0 { return min(temporalHeadGroups, heads) }
        // -1 (session 5): also when the tiles leave the last round of workers part-empty and there are
        // few of them (the 6×6 planes: 3 tiles on 2 workers → 2 groups, 6 tasks).
        if temporalHeadGroups < 0 && tasks >= workers && tasks < 2 * workers && tasks % workers != 0 {
            return min(heads, workers)
        }
        // Only when a worker would otherwise idle: splitting more tiles sends each tile's o through
        // memory instead of cache and repeats its LayerNorm (measured slower at 12×12 and 6×6 planes).
        guard tasks < workers else { return 1 }
        return min(heads, (workers + tasks - 1) / tasks)
    }

    /// Row chunks (multiples of 4 rows) of an output projection with `C` rows over `tasks` column
    /// blocks, so that there are at least 2 tasks per worker.
    static func rowChunk(rows C: Int, tasks: Int, workers: Int) -> Int {
        let parts = max(1, (2 * workers + tasks - 1) / tasks)
        return min(C, max(4, ((C + parts - 1) / parts + 3) / 4 * 4))
    }

    // MARK: - spatial linear attention, frames batched

    /// `spatialLinear` with the frames of a batch element side by side: (1) LayerNorm of all F·Pn
    /// columns, (2) one task per head: its q, k, v rows as GEMMs over all columns (padded to whole
    /// 16-lane groups), the q softmax over all columns, the k softmax per frame, and per frame
    /// ctx = k vᵀ, o = ctxᵀ q, (3) y += Wo · o + b in row chunks. Same contract as `spatialLinear`.
    static func spatialLinearBatched(x: UnsafePointer<Float>, y: P, batch B: Int, channels C: Int, frames F: Int, positions Pn: Int,
                                     gamma: UnsafePointer<Float>, wqkv: UnsafePointer<Float>, wout: UnsafePointer<Float>,
                                     bout: UnsafePointer<Float>, heads: Int, dimHead dh: Int, keyTransposed: UnsafePointer<Float>? = nil,
                                     scratch: UnetScratch, workers: Int) {
        let avx = KernelContext.useAVX512
        // AVX-512: a frame's o is written in whole 16-lane groups (Pp columns), spilling into the next
        // frame's columns (written after it) and, for the last frame, into 16 columns of padding.
        let Pp = (Pn + 15) / 16 * 16
        let hidden = heads * dh, N = F * Pn, Np = (N + 15) / 16 * 16 + (avx ? 16 : 0)
        let scale = Float(1) / Float(dh).squareRoot()
        let wk = max(1, workers)
        // kᵀ path (fused bit 3): per worker kᵀ_h (N × dh) and the k softmax's 1/Σ per frame (F × dh).
        let kT16 = avx && dh % 16 == 0 && fusedPasses & batchedTransposedK != 0
        let wkTransposed = kT16 && keyTransposed == nil ? keyWeightsTransposed(wqkv: wqkv, channels: C, hidden: hidden) : []
        let perWorker = max(dh * dh + 2 * Np, dh * dh + 2 * dh * Pp, kT16 ? dh * dh + N * dh + F * dh : 0)
        scratch.prepare(workers: 1, count: (C + 4 * hidden) * Np + wk * perWorker)
        let xn = scratch.blocks[0], qkv = xn + C * Np, o = qkv + 3 * hidden * Np, local = o + hidden * Np
        for b in 0..<B {
            let xb = x + b * C * N, yb = y + b * C * N
            // (1) LayerNorm; the padding columns are zero.
            let chunks = max(1, min(wk, N / 256)), per = ((N + chunks - 1) / chunks + 7) / 8 * 8
            UnetParallel.run(tasks: chunks, workers: wk) { t, _ in
                let c0 = t * per, c1 = min(N, c0 + per)
                if c0 < c1 {
                    layerNormColumns(xb + c0, srcStride: N, xn + c0, dstStride: Np, channels: C, count: c1 - c0, gamma: gamma)
                }
            }
            if Np > N { for c in 0..<C { (xn + c * Np + N).update(repeating: 0, count: Np - N) } }
            // (2) One task per head.
            wkTransposed.withUnsafeBufferPointer { wkp in
            UnetParallel.run(tasks: heads, workers: wk) { h, worker in
                if kT16 {
                    batchedHeadTransposedK(xn: xn, qkv: qkv, o: o, local: local + worker * perWorker, wqkv: wqkv,
                                           wkT: keyTransposed ?? wkp.baseAddress!,
                                           channels: C, frames: F, positions: Pn, columns: N, stride: Np, paddedPositions: Pp,
                                           heads: heads, head: h, dimHead: dh, scale: scale)
                    return
                }
                let ctx = local + worker * perWorker, colMax = ctx + dh * dh, colSum = colMax + Np
                let q = qkv + h * dh * Np, k = qkv + (hidden + h * dh) * Np, v = qkv + (2 * hidden + h * dh) * Np
                for (row, dst) in [(h * dh, q), (hidden + h * dh, k), (2 * hidden + h * dh, v)] {
                    if avx {
                        UnetAttentionCore.gemm(M: dh, N: Np, K: C, a: wqkv + row * C, lda: C, b: xn, ldb: Np, c: dst, ldc: Np,
                                               groupStride: 16, accumulate: false)
                    } else {
                        sgemm(M: dh, N: Np, K: C, A: wqkv + row * C, lda: C, B: xn, ldb: Np, beta: 0, C: dst, ldc: Np)
                    }
                }
                if avx {
                    UnetAttentionBatchedCore.featureSoftmax(q: q, stride: Np, columns: Np, dimHead: dh, scale: scale)
                    UnetAttentionBatchedCore.segmentSoftmax(k: k, stride: Np, rows: dh, frames: F, positions: Pn)
                } else {
                    featureSoftmaxPortable(q: q, stride: Np, columns: Np, dimHead: dh, scale: scale, colMax: colMax, colSum: colSum)
                    for d in 0..<dh {
                        for f in 0..<F {
                            let r = k + d * Np + f * Pn
                            let mx = rowMax(r, Pn)
                            AttentionOps.vscale(r, 1 / AttentionOps.expInPlace(r, Pn, subtract: mx), Pn)
                        }
                    }
                }
                if avx {
                    // ctxᵀ[e][d] = Σ_n v[e][n] k[d][n] over the frame's positions, copied into rows of Pp
                    // with zero tails; o = ctxᵀ q in whole 16-lane groups.
                    let kf = colMax, vf = kf + dh * Pp
                    if dh % 16 != 0 || spatialContextKernel == 0 {
                        for r in 0..<dh {
                            (kf + r * Pp + Pn).update(repeating: 0, count: Pp - Pn)
                            (vf + r * Pp + Pn).update(repeating: 0, count: Pp - Pn)
                        }
                    }
                    for f in 0..<F {
                        if dh % 16 == 0 && spatialContextKernel != 0 {
                            // As a 16-lane GEMM with k transposed (Pn × dh): no horizontal sums.
                            let kT = kf
                            for d in 0..<dh {
                                let src = k + d * Np + f * Pn
                                for n in 0..<Pn { kT[n * dh + d] = src[n] }
                            }
                            UnetAttentionCore.gemm(M: dh, N: dh, K: Pn, a: v + f * Pn, lda: Np, b: kT, ldb: dh, c: ctx, ldc: dh,
                                                   groupStride: 16, accumulate: false)
                        } else {
                            for r in 0..<dh {
                                (kf + r * Pp).update(from: k + r * Np + f * Pn, count: Pn)
                                (vf + r * Pp).update(from: v + r * Np + f * Pn, count: Pn)
                            }
                            UnetAttentionCore.gemmNT(M: dh, N: dh, K: Pp, a: vf, lda: Pp, b: kf, ldb: Pp, c: ctx, ldc: dh)
                        }
                        UnetAttentionCore.gemm(M: dh, N: Pp, K: dh, a: ctx, lda: dh, b: q + f * Pn, ldb: Np,
                                               c: o + h * dh * Np + f * Pn, ldc: Np, groupStride: 16, accumulate: false)
                    }
                    return
                }
                for f in 0..<F {
                    // ctx[d][e] = Σ_n k[d][n] v[e][n]; o[e][n] = Σ_d ctx[d][e] q[d][n].
                    sgemm(true, M: dh, N: dh, K: Pn, A: k + f * Pn, lda: Np, B: v + f * Pn, ldb: Np, beta: 0, C: ctx, ldc: dh)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(dh), Int32(Pn), Int32(dh), 1, ctx, Int32(dh),
                                q + f * Pn, Int32(Np), 0, o + h * dh * Np + f * Pn, Int32(Np))
                }
            }
            }
            // (3) y += Wo · o + b, in row chunks.
            let rows = rowChunk(rows: C, tasks: 1, workers: wk)
            UnetParallel.run(tasks: (C + rows - 1) / rows, workers: wk) { t, _ in
                let r0 = t * rows, m = min(C, r0 + rows) - r0
                for c in r0..<(r0 + m) {
                    let row = yb + c * N, bv = bout[c]
                    for i in 0..<N { row[i] += bv }
                }
                let n16 = avx ? N / 16 * 16 : 0
                if n16 > 0 {
                    UnetAttentionCore.gemm(M: m, N: n16, K: hidden, a: wout + r0 * hidden, lda: hidden, b: o, ldb: Np,
                                           c: yb + r0 * N, ldc: N, groupStride: 16, accumulate: true)
                }
                if n16 < N {
                    sgemm(M: m, N: N - n16, K: hidden, A: wout + r0 * hidden, lda: hidden, B: o + n16, ldb: Np, beta: 1,
                          C: yb + r0 * N + n16, ldc: N)
                }
            }
        }
    }

    /// Head h of `spatialLinearBatched` with kᵀ (AVX-512, dh a multiple of 16): q and v rows over all
    /// columns, kᵀ_h = xnᵀ Wkᵀ_h (N × dh, `gemmTN`), the q softmax over features, per frame the k softmax
    /// down kᵀ's columns (1/Σ deferred), ctxᵀ = v_f kᵀ_f scaled by column (`gemm32`), o_f = ctxᵀ q_f.
    /// Replaces the row-segment softmax with horizontal reductions and the per-frame scalar transpose of k.
    static func batchedHeadTransposedK(xn: P, qkv: P, o: P, local: P, wqkv: UnsafePointer<Float>, wkT: UnsafePointer<Float>,
                                       channels C: Int, frames F: Int, positions Pn: Int, columns N: Int, stride Np: Int,
                                       paddedPositions Pp: Int, heads: Int, head h: Int, dimHead dh: Int, scale: Float) {
        let hidden = heads * dh
        let ctx = local, kT = ctx + dh * dh, inv = kT + N * dh
        let q = qkv + h * dh * Np, v = qkv + (2 * hidden + h * dh) * Np
        UnetAttentionCore.gemm(M: dh, N: Np, K: C, a: wqkv + h * dh * C, lda: C, b: xn, ldb: Np, c: q, ldc: Np,
                               groupStride: 16, accumulate: false)
        UnetAttentionCore.gemm(M: dh, N: Np, K: C, a: wqkv + (2 * hidden + h * dh) * C, lda: C, b: xn, ldb: Np, c: v, ldc: Np,
                               groupStride: 16, accumulate: false)
        UnetAttentionCore.gemmTN(M: N, N: dh, K: C, a: xn, lda: Np, b: wkT + h * dh, ldb: hidden, c: kT, ldc: dh)
        UnetAttentionBatchedCore.featureSoftmax(q: q, stride: Np, columns: Np, dimHead: dh, scale: scale)
        for f in 0..<F {
            let kf = kT + f * Pn * dh, invf = inv + f * dh
            UnetAttentionCore.columnSoftmaxDeferred(k: kf, rows: Pn, stride: dh, groups: dh / 16, inverse: invf)
            if dh == 32 {
                UnetAttentionCore.gemm32(M: dh, K: Pn, a: v + f * Pn, lda: Np, b: kf, ldb: dh, c: ctx, ldc: dh)
            } else {
                UnetAttentionCore.gemm(M: dh, N: dh, K: Pn, a: v + f * Pn, lda: Np, b: kf, ldb: dh, c: ctx, ldc: dh,
                                       groupStride: 16, accumulate: false)
            }
            scaleColumns(ctx, rows: dh, columns: dh, by: invf)
            // Whole 16-lane groups: spills into the next frame's columns (written after) or the padding.
            UnetAttentionCore.gemm(M: dh, N: Pp, K: dh, a: ctx, lda: dh, b: q + f * Pn, ldb: Np,
                                   c: o + h * dh * Np + f * Pn, ldc: Np, groupStride: 16, accumulate: false)
        }
    }

    // MARK: - temporal attention, heads split over tasks

    /// `temporal` with the heads of each tile split into `groups` tasks: (1) per (tile, head group):
    /// LayerNorm of the tile, the group's q, k (and v) rows, the attention core of its heads into a
    /// shared o buffer; (2) per (tile, row chunk): y += Wo · o. AVX-512: 16-lane tiles (value projection
    /// folded in when C ≤ dh, `folded` as from `foldedOutputWeights`, computed here if nil); portable:
    /// 8-lane tiles. Same contract as `temporal`.
    static func temporalSplit(x: UnsafePointer<Float>, y: P, batch B: Int, channels C: Int, frames F: Int, positions Pn: Int,
                              gamma: UnsafePointer<Float>, wqkv: UnsafePointer<Float>, wout: UnsafePointer<Float>,
                              heads: Int, dimHead dh: Int, rotary: AttentionOps.Rotary?, bias: UnsafePointer<Float>?,
                              folded: UnsafePointer<Float>?, groups G: Int, scratch: UnetScratch, workers: Int) {
        let avx = KernelContext.useAVX512
        let L = avx ? UnetAttentionCore.lanes : lanes, T = F * L, hidden = heads * dh, N = F * Pn
        let tiles = (Pn + L - 1) / L, BT = B * tiles
        let scale = Float(1) / Float(dh).squareRoot()
        let fold = avx && C <= dh
        let computed = fold && folded == nil ? foldedOutputWeights(wqkv: wqkv, wout: wout, channels: C, heads: heads, dimHead: dh) : []
        let valueRows = fold ? C : dh, outK = heads * valueRows
        let wk = max(1, workers)
        let perWorker = C * T + 3 * hidden * T + F * F * L + C * T + UnetAttentionCore.fusedHeadStats(frames: F)
        let fused = avx && fusedPasses & fusedTemporal != 0 && dh % 8 == 0
        scratch.prepare(workers: 1, count: wk * perWorker + BT * outK * T)
        let base = scratch.blocks[0], ob = base + wk * perWorker
        let pairs = rotary.map { min($0.pairs, dh / 2) } ?? 0
        let cosT = rotary?.cos ?? [], sinT = rotary?.sin ?? []
        cosT.withUnsafeBufferPointer { cp in
          sinT.withUnsafeBufferPointer { sp in
            computed.withUnsafeBufferPointer { fp in
                let cosP = rotary == nil ? nil : cp.baseAddress, sinP = rotary == nil ? nil : sp.baseAddress
                let tablePairs = rotary?.pairs ?? 0
                let wo = fold ? (folded ?? UnsafePointer(fp.baseAddress!)) : wout
                // (1) Attention per (tile, head group).
                UnetParallel.run(tasks: BT * G, workers: wk) { task, worker in
                    let bt = task / G, g = task % G
                    let b = bt / tiles, p0 = (bt % tiles) * L, n = min(L, Pn - p0)
                    let h0 = g * heads / G, h1 = (g + 1) * heads / G
                    let xn = base + worker * perWorker, qkv = xn + C * T, s = qkv + 3 * hidden * T
                    let xb = x + b * C * N + p0
                    for f in 0..<F {
                        layerNormColumns(xb + f * Pn, srcStride: N, xn + f * L, dstStride: T, channels: C, count: n, gamma: gamma)
                        if n < L { for c in 0..<C { (xn + c * T + f * L + n).update(repeating: 0, count: L - n) } }
                    }
                    let rows = (h1 - h0) * dh
                    for part in 0..<(fold ? 2 : 3) {
                        let r = part * hidden + h0 * dh
                        if fused && part < 2 {
                            projectRotated(wqkv: wqkv + r * C, rows: rows, channels: C, xn: xn, T: T, qk: qkv + r * T, dimHead: dh,
                                           cos: cosP, sin: sinP, tablePairs: tablePairs, pairs: pairs)
                        } else if avx {
                            UnetAttentionCore.gemm(M: rows, N: T, K: C, a: wqkv + r * C, lda: C, b: xn, ldb: T, c: qkv + r * T, ldc: T,
                                                   groupStride: L, accumulate: false)
                        } else {
                            sgemm(M: rows, N: T, K: C, A: wqkv + r * C, lda: C, B: xn, ldb: T, beta: 0, C: qkv + r * T, ldc: T)
                        }
                    }
                    let o = ob + bt * outK * T
                    let stats = xn + C * T + 3 * hidden * T + F * F * L + C * T
                    for h in h0..<h1 {
                        if fused {
                            UnetAttentionCore.temporalHeadFused(q: qkv + h * dh * T, k: qkv + (hidden + h * dh) * T,
                                                                v: fold ? xn : qkv + (2 * hidden + h * dh) * T,
                                                                frames: F, dimHead: dh, valueRows: valueRows, out: o + h * valueRows * T,
                                                                scale: scale, bias: bias.map { $0 + h * F * F }, s: s, stats: stats)
                        } else if avx {
                            UnetAttentionCore.temporalHead(q: qkv + h * dh * T, k: qkv + (hidden + h * dh) * T,
                                                           v: fold ? xn : qkv + (2 * hidden + h * dh) * T,
                                                           frames: F, dimHead: dh, valueRows: valueRows, out: o + h * valueRows * T,
                                                           scale: scale, cos: cosP, sin: sinP, tablePairs: tablePairs, pairs: pairs,
                                                           bias: bias.map { $0 + h * F * F }, s: s)
                        } else {
                            temporalHead8(qkv: qkv, o: o, s: s, frames: F, heads: heads, dimHead: dh, head: h, scale: scale,
                                          rotary: rotary, pairs: pairs, bias: bias)
                        }
                    }
                }
                // (2) y += Wo · o per (tile, row chunk).
                let rowsPer = rowChunk(rows: C, tasks: BT, workers: wk), R = (C + rowsPer - 1) / rowsPer
                UnetParallel.run(tasks: BT * R, workers: wk) { task, worker in
                    let bt = task / R, r0 = (task % R) * rowsPer, m = min(C, r0 + rowsPer) - r0
                    let b = bt / tiles, p0 = (bt % tiles) * L, n = min(L, Pn - p0)
                    let o = ob + bt * outK * T, yb = y + b * C * N + p0
                    let tmp = base + worker * perWorker + C * T + 3 * hidden * T + F * F * L
                    if avx && n == L {
                        UnetAttentionCore.gemm(M: m, N: T, K: outK, a: wo + r0 * outK, lda: outK, b: o, ldb: T, c: yb + r0 * N, ldc: N,
                                               groupStride: Pn, accumulate: true)
                        return
                    }
                    if avx {
                        UnetAttentionCore.gemm(M: m, N: T, K: outK, a: wo + r0 * outK, lda: outK, b: o, ldb: T, c: tmp, ldc: T,
                                               groupStride: L, accumulate: false)
                    } else {
                        sgemm(M: m, N: T, K: outK, A: wo + r0 * outK, lda: outK, B: o, ldb: T, beta: 0, C: tmp, ldc: T)
                    }
                    for c in 0..<m {
                        for f in 0..<F {
                            let dst = yb + (r0 + c) * N + f * Pn, src = tmp + c * T + f * L
                            for l in 0..<n { dst[l] += src[l] }
                        }
                    }
                }
            }
          }
        }
    }
}
