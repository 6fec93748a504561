import COpenBLAS
import Foundation
import KernelsAVX512

/// The inference ops of the DiffTumor networks that the tensor ops of `Kernels` do not provide in
/// this form: GroupNorm fused with the UNet's scale/shift and SiLU (in place or into a new tensor,
/// with statistics reusable from the residual add), SIMD SiLU/exp, the channel LayerNorm and a
/// GEMM split across the workers. Convolutions, transposed convolutions, padding, concatenation and
/// linear layers are the `Tensor` ops.
/// Tensors are NCDHW.
public enum NetworkOps {
    /// True when OpenBLAS runs single-threaded and the ops have more than one worker: GEMMs are then
    /// split across the workers (each calling single-threaded `cblas_sgemm` on its part), so no
    /// OpenBLAS thread spins while the workers run the loops around the GEMMs.
    static var workerGEMM: Bool { KernelContext.threads > 1 && BLASThreads.count == 1 }

    /// Row-major C = α·op(A)·op(B) + β·C, split along N (or M when N is small) across the workers
    /// when `workerGEMM`, else one `cblas_sgemm` call.
    static func sgemm(transA: Bool, transB: Bool, M: Int, N: Int, K: Int, alpha: Float = 1,
                      A: UnsafePointer<Float>, lda: Int, B: UnsafePointer<Float>, ldb: Int,
                      beta: Float, C: UnsafeMutablePointer<Float>, ldc: Int) {
        let ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans
        let w = workerGEMM ? min(KernelContext.threads, max(1, (M * N * K) / 2_000_000)) : 1
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

    // MARK: - normalisation and activations

    /// Tensors of fewer floats than this run their GroupNorm, statistics, residual-add and SiLU passes on
    /// the calling thread instead of splitting them across the workers (`DispatchQueue.concurrentPerform`
    /// costs ~10 µs of wake-up idle, more when the machine is loaded, against a few µs of work on the Unet's
    /// 6² and 3² levels). 0: always split (the previous code). The same floats either way (each
    /// (image, group) is one task whichever thread runs it). Knob `inline` of `tumorbench networks unet-ab`.
    /// Default 100 000: the Unet's levels 2 and 3 and its middle (83k and 41k floats) run inline, levels
    /// 0 and 1 (332k, 166k) stay split (session 5, `tumorbench networks resnet-phases --ab inline=0,100000`:
    /// those norms 10–35% faster).
    nonisolated(unsafe) public static var inlineBelow = 100_000

    /// Whether the passes above `inlineBelow` hand out their tasks (GroupNorm: one (image, group) each;
    /// SiLU: 4096 floats each) one at a time to whichever worker is free (true), or as one contiguous
    /// range per worker (false, default: the previous code). With ranges, a worker descheduled by
    /// other load holds its whole half while the other waits. The same floats either way.
    /// Knob `gtasks` of `tumorbench networks unet-ab`.
    nonisolated(unsafe) public static var singleTasks = false

    /// `KernelContext.parallelFor(count)` (or task by task with `singleTasks`), or `body(0..<count)` on this
    /// thread when `elements` < `inlineBelow`.
    @inline(__always)
    static func parallelFor(_ count: Int, elements: Int, _ body: (Range<Int>) -> Void) {
        if elements < inlineBelow { if count > 0 { body(0..<count) }; return }
        if singleTasks && KernelContext.threads > 1 && count > KernelContext.threads {
            DispatchQueue.concurrentPerform(iterations: count) { i in body(i..<(i + 1)) }
            return
        }
        KernelContext.parallelFor(count, body)
    }

    /// Mean and biased variance of each (image, group) of an NC… tensor, accumulated in Double.
    public struct GroupStatistics {
        public var groups: Int
        public var mean: [Double]
        public var variance: [Double]
    }

    /// Running (count, mean, M2) of a group, fed chunk by chunk (Chan et al.'s pairwise update).
    struct Moments {
        var count = 0.0, mean = 0.0, m2 = 0.0

        /// Adds `n` ≤ 4096 floats at `p`: chunk sum and centred sum of squares in Float SIMD (the chunk is
        /// in L1 for the second loop), merged in Double.
        @inline(__always)
        mutating func add(_ p: UnsafePointer<Float>, _ n: Int) {
            guard n > 0 else { return }
            let s: Float, q: Float
            if KernelContext.useAVX512 {
                (s, q) = NormActivationAVX512.moments(p, n)   // the same sums, 16 lanes per load
            } else {
                (s, q) = NetworkOps.moments(p, n)
            }
            merge(sum: s, centred: q, count: n)
        }

        /// Adds a chunk of `n` floats given by its sum `s` and its Σ (x − c)² `q` with c = s / n in Float.
        @inline(__always)
        mutating func merge(sum s: Float, centred q: Float, count n: Int) {
            guard n > 0 else { return }
            // Chunk mean μ = s/n exactly; Σ(x−μ)² = Σ(x−c)² − n(c−μ)² with c = s/n in Float.
            let c = s / Float(n)
            let nd = Double(n), mu = Double(s) / nd, off = Double(c) - mu
            let m2c = max(0, Double(q) - nd * off * off)
            let total = count + nd, delta = mu - mean
            mean += delta * nd / total
            m2 += m2c + delta * delta * count * nd / total
            count = total
        }
    }

    /// Σ p[j] and Σ (p[j] − c)² with c = Σ p[j] / n: two SIMD8 accumulators (the first and second 8 of
    /// every 16 floats), summed lane by lane, then the scalar tail.
    @inline(__always)
    static func moments(_ p: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
        let raw = UnsafeRawPointer(p)
        var s0 = SIMD8<Float>.zero, s1 = SIMD8<Float>.zero
        var j = 0
        while j + 16 <= n {
            s0 += raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            s1 += raw.loadUnaligned(fromByteOffset: 4 * j + 32, as: SIMD8<Float>.self)
            j += 16
        }
        var s = (s0 + s1).sum()
        while j < n { s += p[j]; j += 1 }
        let c = s / Float(n)
        var q0 = SIMD8<Float>.zero, q1 = SIMD8<Float>.zero
        j = 0
        while j + 16 <= n {
            let d0 = raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - c
            let d1 = raw.loadUnaligned(fromByteOffset: 4 * j + 32, as: SIMD8<Float>.self) - c
            q0 += d0 * d0
            q1 += d1 * d1
            j += 16
        }
        var q = (q0 + q1).sum()
        while j < n { let d = p[j] - c; q += d * d; j += 1 }
        return (s, q)
    }

    /// Statistics of each (image, group) of `x`: one read of the tensor, over the worker threads.
    public static func groupStatistics(_ x: Tensor, groups: Int) -> GroupStatistics {
        let B = x.shape[0], C = x.shape[1], S = x.count / max(1, B * C)
        precondition(C % groups == 0, "groupStatistics: \(x.shape) into \(groups) groups")
        var mean = [Double](repeating: 0, count: B * groups), variance = mean
        let n = C / groups * S
        x.withUnsafeBufferPointer { xp in
            mean.withUnsafeMutableBufferPointer { mp in
                variance.withUnsafeMutableBufferPointer { vp in
                    let base = xp.baseAddress!
                    parallelFor(B * groups, elements: x.count) { range in
                        for job in range {
                            var m = Moments()
                            var i = 0
                            while i < n { let c = min(4096, n - i); m.add(base + job * n + i, c); i += c }
                            mp[job] = m.mean
                            vp[job] = m.m2 / Double(max(n, 1))
                        }
                    }
                }
            }
        }
        return GroupStatistics(groups: groups, mean: mean, variance: variance)
    }

    /// Group statistics from per-plane partial sums (`DirectConvolution.Fusion.statistics`): `planeMoments`
    /// holds, per image, channel and plane, (Σ x, Σ (x − c)²) over `planeSize` floats, c = Σ x / planeSize;
    /// the planes are merged in Double (Chan's update), channel by channel, plane by plane.
    public static func groupStatistics(planeMoments pm: UnsafePointer<Float>, images B: Int, channels C: Int, planes D: Int,
                                       planeSize P: Int, groups: Int) -> GroupStatistics {
        precondition(C % groups == 0, "groupStatistics: \(C) channels into \(groups) groups")
        let cpg = C / groups
        var mean = [Double](repeating: 0, count: B * groups), variance = mean
        for b in 0..<B {
            for g in 0..<groups {
                var m = Moments()
                for c in (g * cpg)..<((g + 1) * cpg) {
                    let p = pm + 2 * ((b * C + c) * D)
                    for d in 0..<D { m.merge(sum: p[2 * d], centred: p[2 * d + 1], count: P) }
                }
                mean[b * groups + g] = m.mean
                variance[b * groups + g] = m.m2 / Double(max(cpg * D * P, 1))
            }
        }
        return GroupStatistics(groups: groups, mean: mean, variance: variance)
    }

    /// The per-(image, channel) affine of GroupNorm (+ ×(1 + scale) + shift) from group statistics:
    /// normalised x = x·a + o, with the same float operations as `groupNorm`'s pass.
    public static func groupNormCoefficients(_ stats: GroupStatistics, channels C: Int, eps: Float, weight: Tensor, bias: Tensor,
                                             scale: Tensor? = nil, shift: Tensor? = nil) -> (a: [Float], o: [Float]) {
        let groups = stats.groups, B = stats.mean.count / max(1, groups), cpg = C / groups
        precondition(C % groups == 0 && weight.count == C && bias.count == C, "groupNormCoefficients: \(C) channels, \(groups) groups")
        let gp = weight.scalars, bp = bias.scalars
        let sc = scale?.scalars, sh = shift?.scalars
        var av = [Float](repeating: 0, count: B * C), ov = av
        for bg in 0..<(B * groups) {
            let b = bg / groups, g = bg % groups
            for cc in 0..<cpg {
                let c = g * cpg + cc
                (av[b * C + c], ov[b * C + c]) = channelAffine(mean: stats.mean[bg], variance: stats.variance[bg], eps: eps,
                                                               gain: gp[c], bias: bp[c], scale: sc?[b * C + c], shift: sh?[b * C + c])
            }
        }
        return (av, ov)
    }

    /// One channel's GroupNorm as x·a + o (then ×(1 + scale) + shift when given), from its group's statistics.
    @inline(__always)
    static func channelAffine(mean: Double, variance: Double, eps: Float, gain: Float, bias: Float,
                              scale: Float?, shift: Float?) -> (a: Float, o: Float) {
        let rstd = 1 / (variance + Double(eps)).squareRoot()
        var a = Float(rstd) * gain
        var o = bias - Float(mean * rstd) * gain
        if let scale, let shift {
            let s1 = 1 + scale
            a *= s1
            o = o * s1 + shift
        }
        return (a, o)
    }

    /// AVX-512 only (`ResidualEpilogueAVX512`): h = act(h·a[b, c] + o[b, c]) + r in place, with r = `identity`
    /// or, with `packedWeight` (`ResidualEpilogueAVX512.packWeight` of a [C × (C1 + C2)] 1×1 conv), r = bias +
    /// W·[x1; x2] computed in the same pass. h is (B, C, S…); x1 (B, C1, S…), x2 (B, C2, S…) or nil.
    /// Columns in runs of 32 across the workers (on the calling thread below `inlineBelow` floats).
    public static func normalizeAddResidual(_ h: inout Tensor, a: [Float], o: [Float], silu: Bool, identity: Tensor?,
                                            packedWeight: [Float]?, bias: Tensor?, x1: Tensor, x2: Tensor?) {
        precondition(KernelContext.useAVX512, "normalizeAddResidual: AVX-512 only")
        let B = h.shape[0], C = h.shape[1], S = h.count / max(1, B * C)
        let c1 = x1.shape[1], c2 = x2?.shape[1] ?? 0
        precondition(a.count == B * C && o.count == B * C && x1.shape[0] == B && x1.count == B * c1 * S
                     && (x2 == nil || x2!.count == B * c2 * S) && (identity == nil || identity!.shape == h.shape)
                     && (identity != nil || packedWeight != nil), "normalizeAddResidual: \(h.shape) with \(x1.shape), \(x2?.shape ?? [])")
        let workers = h.count < inlineBelow ? 1 : max(1, min(KernelContext.threads, S / 256))
        let chunk = ((S + workers - 1) / workers + 31) / 32 * 32
        let empty: [Float] = []
        h.withMutablePointer { hp in x1.withPointer { p1 in a.withUnsafeBufferPointer { ap in o.withUnsafeBufferPointer { op in
        (packedWeight ?? empty).withUnsafeBufferPointer { wp in
            let p2 = x2?.withPointer { $0 }, rp = identity?.withPointer { $0 }, bp = bias?.withPointer { $0 }   // held by the caller
            let work = { (worker: Int) in
                let j0 = worker * chunk, j1 = min(S, j0 + chunk)
                guard j1 > j0 else { return }
                for b in 0..<B {
                    ResidualEpilogueAVX512.normalizeAddResidual(
                        h: hp + b * C * S, channels: C, stride: S, columns: j0, j1, scale: ap.baseAddress! + b * C,
                        shift: op.baseAddress! + b * C, silu: silu, identity: rp.map { $0 + b * C * S },
                        weight: packedWeight == nil ? nil : wp.baseAddress!, bias: bp,
                        x1: p1 + b * c1 * S, c1: packedWeight == nil ? 0 : c1, x2: p2.map { $0 + b * c2 * S }, c2: c2)
                }
            }
            if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        }
        }}}}
    }

    /// Elementwise a += b over the worker threads, returning the group statistics of the sum
    /// (computed on each chunk while it is in L1: the next GroupNorm needs no extra read).
    public static func addReturningStatistics(_ a: inout Tensor, _ b: Tensor, groups: Int) -> GroupStatistics {
        precondition(a.shape == b.shape, "add: \(a.shape) + \(b.shape)")
        let B = a.shape[0], C = a.shape[1], S = a.count / max(1, B * C)
        precondition(C % groups == 0, "addReturningStatistics: \(a.shape) into \(groups) groups")
        var mean = [Double](repeating: 0, count: B * groups), variance = mean
        let n = C / groups * S
        a.withUnsafeMutableBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                mean.withUnsafeMutableBufferPointer { mp in
                    variance.withUnsafeMutableBufferPointer { vp in
                        let dst = ap.baseAddress!, src = bp.baseAddress!
                        parallelFor(B * groups, elements: B * C * S) { range in
                            for job in range {
                                var m = Moments()
                                var i = 0
                                while i < n {
                                    let c = min(4096, n - i)
                                    let o = job * n + i
                                    addArrays(dst + o, src + o, c)
                                    m.add(dst + o, c)
                                    i += c
                                }
                                mp[job] = m.mean
                                vp[job] = m.m2 / Double(max(n, 1))
                            }
                        }
                    }
                }
            }
        }
        return GroupStatistics(groups: groups, mean: mean, variance: variance)
    }

    /// d[i] += s[i].
    @inline(__always)
    static func addArrays(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        if KernelContext.useAVX512 { NormActivationAVX512.add(d, s, n); return }
        let dr = UnsafeMutableRawPointer(d), sr = UnsafeRawPointer(s)
        var j = 0
        while j + 8 <= n {
            dr.storeBytes(of: dr.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
                          + sr.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self), toByteOffset: 4 * j, as: SIMD8<Float>.self)
            j += 8
        }
        while j < n { d[j] += s[j]; j += 1 }
    }

    /// GroupNorm over (B, C, S...) followed, optionally, by `x*(1+scale[b,c]) + shift[b,c]` and SiLU,
    /// and then, optionally, `+ residual` (same shape; added to each channel right after it is
    /// normalised, while it is in cache: the same float additions as a separate `add`).
    /// Statistics in Double (pass `stats` when they are known already); in place.
    public static func groupNorm(_ x: inout Tensor, groups: Int, eps: Float, weight: Tensor, bias: Tensor,
                                 scale: Tensor? = nil, shift: Tensor? = nil, silu: Bool, stats: GroupStatistics? = nil,
                                 residual: Tensor? = nil) {
        let shape = x.shape
        precondition(residual == nil || residual!.shape == shape, "groupNorm: residual \(residual!.shape) for \(shape)")
        x.withUnsafeMutableBufferPointer { xp in
            if let residual {
                residual.withUnsafeBufferPointer { rp in
                    normalize(from: UnsafePointer(xp.baseAddress!), to: xp.baseAddress!, shape: shape, groups: groups, eps: eps,
                              weight: weight, bias: bias, scale: scale, shift: shift, silu: silu, stats: stats,
                              residual: rp.baseAddress!)
                }
            } else {
                normalize(from: UnsafePointer(xp.baseAddress!), to: xp.baseAddress!, shape: shape, groups: groups, eps: eps,
                          weight: weight, bias: bias, scale: scale, shift: shift, silu: silu, stats: stats)
            }
        }
    }

    /// GroupNorm (+ optional SiLU) of `x` into a new tensor: one read of `x` for the statistics (none when
    /// `stats` is given) and one read and one write for the normalisation.
    public static func groupNormed(_ x: Tensor, groups: Int, eps: Float, weight: Tensor, bias: Tensor,
                                   silu: Bool, stats: GroupStatistics? = nil) -> Tensor {
        var out = Tensor(uninitialized: x.shape)
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                normalize(from: xp.baseAddress!, to: op.baseAddress!, shape: x.shape, groups: groups, eps: eps,
                          weight: weight, bias: bias, scale: nil, shift: nil, silu: silu, stats: stats)
            }
        }
        return out
    }

    static func normalize(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, shape: [Int], groups: Int, eps: Float,
                          weight: Tensor, bias: Tensor, scale: Tensor?, shift: Tensor?, silu: Bool, stats: GroupStatistics?,
                          residual: UnsafePointer<Float>? = nil) {
        let B = shape[0], C = shape[1], S = shape.dropFirst(2).reduce(1, *)
        precondition(C % groups == 0 && weight.count == C && bias.count == C, "groupNorm: \(shape), \(groups) groups, weight \(weight.shape)")
        precondition(stats == nil || (stats!.groups == groups && stats!.mean.count == B * groups), "groupNorm: statistics for another shape")
        let cpg = C / groups
        let sc = scale?.scalars, sh = shift?.scalars
        weight.withUnsafeBufferPointer { gp in
            bias.withUnsafeBufferPointer { bp in
                parallelFor(B * groups, elements: B * C * S) { range in
                    for bg in range {
                        let b = bg / groups, g = bg % groups
                        let offset = (b * C + g * cpg) * S
                        let mean: Double, variance: Double
                        if let stats {
                            mean = stats.mean[bg]; variance = stats.variance[bg]
                        } else {
                            var m = Moments()
                            var i = 0
                            while i < cpg * S { let c = min(4096, cpg * S - i); m.add(src + offset + i, c); i += c }
                            mean = m.mean; variance = m.m2 / Double(max(cpg * S, 1))
                        }
                        for cc in 0..<cpg {
                            let c = g * cpg + cc
                            let (a, o) = channelAffine(mean: mean, variance: variance, eps: eps, gain: gp[c], bias: bp[c],
                                                       scale: sc?[b * C + c], shift: sh?[b * C + c])
                            affine(src + offset + cc * S, dst + offset + cc * S, S, a, o, silu: silu)
                            if let residual { addArrays(dst + offset + cc * S, residual + offset + cc * S, S) }
                        }
                    }
                }
            }
        }
    }

    /// dst[i] = act(src[i] * a + o); `dst` may be `src`.
    @inline(__always)
    static func affine(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ o: Float, silu: Bool) {
        // AVX-512: the same operations 16 lanes wide (bit-identical), then the scalar tail below.
        var j = KernelContext.useAVX512 ? NormActivationAVX512.affine(src, dst, n, a, o, silu: silu) : 0
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        if silu {
            while j + 8 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) * a + o
                d.storeBytes(of: v / (1 + fastExp(-v)), toByteOffset: 4 * j, as: SIMD8<Float>.self)
                j += 8
            }
            while j < n { let v = src[j] * a + o; dst[j] = v / (1 + Foundation.exp(-v)); j += 1 }
        } else {
            while j + 8 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) * a + o
                d.storeBytes(of: v, toByteOffset: 4 * j, as: SIMD8<Float>.self)
                j += 8
            }
            while j < n { dst[j] = src[j] * a + o; j += 1 }
        }
    }

    /// exp for 8 lanes (Cephes polynomial, max relative error 8e-8 over the range); inputs clamped to [−87.3, 88.3].
    /// n = round(x·log2 e) comes from adding 1.5·2²³ + 127 (the float's low mantissa bits then hold
    /// n + 127, shifted into the exponent for 2ⁿ): no `round` call, which baseline x86-64 (SSE2) lacks.
    @inline(__always)
    public static func fastExp(_ x0: SIMD8<Float>) -> SIMD8<Float> {
        // Clamp with compare+select (`clamped`/`pointwiseMin` compile to scalar calls here; this is minps/maxps).
        let lo = SIMD8<Float>(repeating: -87.3), hi = SIMD8<Float>(repeating: 88.3)
        var x = x0.replacing(with: lo, where: x0 .< lo)
        x.replace(with: hi, where: x .> hi)
        let magic: Float = 12_583_039   // 1.5·2²³ + 127
        let t = x * 1.44269504088896341 + magic
        let fx = t - magic
        x = x - fx * 0.693359375 + fx * 2.12194440e-4
        let z = x * x
        var y: SIMD8<Float> = SIMD8(repeating: 1.9875691500E-4)
        y = y * x + 1.3981999507E-3
        y = y * x + 8.3334519073E-3
        y = y * x + 4.1665795894E-2
        y = y * x + 1.6666665459E-1
        y = y * x + 5.0000001201E-1
        y = y * z + x + 1
        let pow2 = unsafeBitCast(unsafeBitCast(t, to: SIMD8<UInt32>.self) &<< 23, to: SIMD8<Float>.self)
        return y * pow2
    }

    /// SiLU in place.
    public static func silu(_ x: inout Tensor) {
        x.withUnsafeMutableBufferPointer { p in
            let base = p.baseAddress!, n = p.count
            parallelFor(n / 4096 + 1, elements: n) { r in
                let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
                if hi > lo { affine(base + lo, base + lo, hi - lo, 1, 0, silu: true) }
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
                    KernelContext.parallelFor(B * ((S + block - 1) / block)) { range in
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
}
