import COpenBLAS
import Foundation

/// Attention kernels of the video-diffusion UNet: softmax attention over short token sequences
/// (temporal: along D at each (h, w); spatial: over (h, w) of each slice), with optional rotary
/// embedding and relative position bias, and the spatial *linear* attention.
public enum AttentionOps {
    /// `RotaryEmbedding(dim).rotate_queries_or_keys` tables: angle[t][i] = t · freqs[i].
    public struct Rotary {
        public let cos: [Float]
        public let sin: [Float]
        public let pairs: Int
        public init(freqs: [Float], positions: Int) {
            pairs = freqs.count
            var c = [Float](repeating: 0, count: positions * pairs), s = c
            for t in 0..<positions {
                for i in 0..<pairs {
                    let a = Float(t) * freqs[i]
                    c[t * pairs + i] = Foundation.cos(a)
                    s[t * pairs + i] = Foundation.sin(a)
                }
            }
            cos = c; sin = s
        }
    }

    /// T5 relative position bucket (`RelativePositionBias._relative_position_bucket`), float32 like torch.
    public static func relativePositionBucket(_ relative: Int, numBuckets: Int = 32, maxDistance: Int = 128) -> Int {
        var ret = 0
        var n = -relative
        let nb = numBuckets / 2
        if n < 0 { ret += nb }
        n = abs(n)
        let maxExact = nb / 2
        if n < maxExact { return ret + n }
        let ratio = Float(n) / Float(maxExact)
        let l = Foundation.log(ratio) / Float(Foundation.log(Double(maxDistance) / Double(maxExact)))
        var large = maxExact + Int(l * Float(nb - maxExact))
        large = min(large, nb - 1)
        return ret + large
    }

    /// bias[h][i][j] = table[bucket(j − i)][h], table (buckets, heads).
    public static func relativePositionBias(table: Tensor, tokens n: Int, maxDistance: Int) -> [Float] {
        let buckets = table.shape[0], heads = table.shape[1]
        let tv = table.scalars
        var out = [Float](repeating: 0, count: heads * n * n)
        for i in 0..<n {
            for j in 0..<n {
                let b = relativePositionBucket(j - i, numBuckets: buckets, maxDistance: maxDistance)
                for h in 0..<heads { out[(h * n + i) * n + j] = tv[b * heads + h] }
            }
        }
        return out
    }

    /// Softmax attention on a (tokens × 3·heads·dimHead) row layout `qkvT`: the row of token t of
    /// group g is g·groupStride + t·tokenStride. Writes (tokens × heads·dimHead) rows into `out`.
    public static func softmaxAttention(qkvT: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, groups: Int, tokens T: Int,
                                 groupStride: Int, tokenStride: Int, heads: Int, dimHead: Int,
                                 rotary: Rotary?, bias: [Float]?) {
        let hidden = heads * dimHead
        let scale = Float(1) / Float(dimHead).squareRoot()
        KernelContext.parallelFor(groups) { range in
            // q (T × dh, scaled, rotated), kᵀ (dh × Tp, rotated, zero-padded to a multiple of 8), v (T × dh).
            let Tp = (T + 7) / 8 * 8
            let q = UnsafeMutablePointer<Float>.allocate(capacity: T * dimHead)
            let kT = UnsafeMutablePointer<Float>.allocate(capacity: dimHead * Tp)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: T * dimHead)
            let sim = UnsafeMutablePointer<Float>.allocate(capacity: Tp)
            let krow = UnsafeMutablePointer<Float>.allocate(capacity: dimHead)
            defer { q.deallocate(); kT.deallocate(); v.deallocate(); sim.deallocate(); krow.deallocate() }
            kT.initialize(repeating: 0, count: dimHead * Tp)
            let simRaw = UnsafeMutableRawPointer(sim), kRaw = UnsafeRawPointer(kT), vRaw = UnsafeRawPointer(v)
            let vec = dimHead % 8 == 0
            for g in range {
                for h in 0..<heads {
                    for t in 0..<T {
                        let row = qkvT + (g * groupStride + t * tokenStride) * 3 * hidden + h * dimHead
                        for d in 0..<dimHead {
                            q[t * dimHead + d] = row[d] * scale
                            krow[d] = row[hidden + d]
                            v[t * dimHead + d] = row[2 * hidden + d]
                        }
                        if let r = rotary {
                            for i in 0..<min(r.pairs, dimHead / 2) {
                                let c = r.cos[t * r.pairs + i], s = r.sin[t * r.pairs + i]
                                let q0 = q[t * dimHead + 2 * i], q1 = q[t * dimHead + 2 * i + 1]
                                q[t * dimHead + 2 * i] = q0 * c + (-q1) * s
                                q[t * dimHead + 2 * i + 1] = q1 * c + q0 * s
                                let k0 = krow[2 * i], k1 = krow[2 * i + 1]
                                krow[2 * i] = k0 * c + (-k1) * s
                                krow[2 * i + 1] = k1 * c + k0 * s
                            }
                        }
                        for d in 0..<dimHead { kT[d * Tp + t] = krow[d] }
                    }
                    for i in 0..<T {
                        // sim[j] = q_i · k_j, eight keys per SIMD lane group.
                        var jb = 0
                        while jb < Tp {
                            var acc = SIMD8<Float>.zero
                            for d in 0..<dimHead {
                                acc += q[i * dimHead + d] * kRaw.loadUnaligned(fromByteOffset: 4 * (d * Tp + jb), as: SIMD8<Float>.self)
                            }
                            simRaw.storeBytes(of: acc, toByteOffset: 4 * jb, as: SIMD8<Float>.self)
                            jb += 8
                        }
                        var mx = -Float.infinity
                        for j in 0..<T {
                            if let bias { sim[j] += bias[(h * T + i) * T + j] }
                            mx = max(mx, sim[j])
                        }
                        let inv = 1 / expInPlace(sim, T, subtract: mx)
                        let orow = out + (g * groupStride + i * tokenStride) * hidden + h * dimHead
                        if vec {
                            let oRaw = UnsafeMutableRawPointer(orow)
                            var c = 0
                            while c < dimHead {
                                var acc = SIMD8<Float>.zero
                                for j in 0..<T { acc += (sim[j] * inv) * vRaw.loadUnaligned(fromByteOffset: 4 * (j * dimHead + c), as: SIMD8<Float>.self) }
                                oRaw.storeBytes(of: acc, toByteOffset: 4 * c, as: SIMD8<Float>.self)
                                c += 8
                            }
                        } else {
                            for d in 0..<dimHead {
                                var acc: Float = 0
                                for j in 0..<T { acc += sim[j] * inv * v[j * dimHead + d] }
                                orow[d] = acc
                            }
                        }
                    }
                }
            }
        }
    }

    /// `SpatialLinearAttention` core on a (3·hidden × F·HW) channel-major `qkv` (modified in place):
    /// per frame and head, q softmaxed over features and scaled, k over positions; out = (k vᵀ)ᵀ q.
    static func linearAttention(qkv: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, frames F: Int, positions P: Int,
                                heads: Int, dimHead: Int) {
        let hidden = heads * dimHead
        let N = F * P
        let scale = Float(1) / Float(dimHead).squareRoot()
        KernelContext.parallelFor(F * heads) { range in
            var ctx = [Float](repeating: 0, count: dimHead * dimHead)
            let colMax = UnsafeMutablePointer<Float>.allocate(capacity: P)
            let colSum = UnsafeMutablePointer<Float>.allocate(capacity: P)
            defer { colMax.deallocate(); colSum.deallocate() }
            for task in range {
                let f = task / heads, h = task % heads
                let q = qkv + (h * dimHead) * N + f * P
                let k = qkv + (hidden + h * dimHead) * N + f * P
                let v = qkv + (2 * hidden + h * dimHead) * N + f * P
                // q: softmax over the dimHead features at each position, then × scale.
                colMax.update(from: q, count: P)
                for d in 1..<dimHead { vmax(colMax, q + d * N, P) }
                colSum.update(repeating: 0, count: P)
                for d in 0..<dimHead {
                    let r = q + d * N
                    _ = expInPlace(r, P, subtract: 0, minus: colMax)
                    vadd(colSum, r, P)
                }
                for n in 0..<P { colSum[n] = scale / colSum[n] }
                for d in 0..<dimHead { vmul(q + d * N, colSum, P) }
                // k: softmax over positions for each feature.
                for d in 0..<dimHead {
                    let r = k + d * N
                    var mx = -Float.infinity
                    for n in 0..<P { mx = max(mx, r[n]) }
                    let inv = 1 / expInPlace(r, P, subtract: mx)
                    vscale(r, inv, P)
                }
                // context[d][e] = Σ_n k[d][n] v[e][n]
                for d in 0..<dimHead {
                    for e in 0..<dimHead {
                        ctx[d * dimHead + e] = dot(k + d * N, v + e * N, P)
                    }
                }
                // out[e][n] = Σ_d context[d][e] q[d][n]
                for e in 0..<dimHead {
                    let orow = out + (h * dimHead + e) * N + f * P
                    orow.update(repeating: 0, count: P)
                    for d in 0..<dimHead { axpy(ctx[d * dimHead + e], q + d * N, orow, P) }
                }
            }
        }
    }

    @inline(__always)
    static func vmax(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        while i + 8 <= n {
            let a = ry.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self), b = rx.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            ry.storeBytes(of: a.replacing(with: b, where: b .> a), toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] = max(y[i], x[i]); i += 1 }
    }

    @inline(__always)
    static func vadd(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) { axpy(1, x, y, n) }

    @inline(__always)
    static func vmul(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        while i + 8 <= n {
            let v = ry.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * rx.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            ry.storeBytes(of: v, toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] *= x[i]; i += 1 }
    }

    @inline(__always)
    static func vscale(_ y: UnsafeMutablePointer<Float>, _ s: Float, _ n: Int) {
        var i = 0
        let ry = UnsafeMutableRawPointer(y)
        while i + 8 <= n {
            ry.storeBytes(of: ry.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * s, toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] *= s; i += 1 }
    }

    /// p[i] = exp(p[i] − subtract − minus[i]) (minus optional); returns the sum.
    @inline(__always)
    static func expInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int, subtract: Float, minus: UnsafePointer<Float>? = nil) -> Float {
        var acc = SIMD8<Float>.zero
        var i = 0
        let raw = UnsafeMutableRawPointer(p)
        while i + 8 <= n {
            var v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) - subtract
            if let minus { v -= UnsafeRawPointer(minus).loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) }
            let e = NetworkOps.fastExp(v)
            raw.storeBytes(of: e, toByteOffset: 4 * i, as: SIMD8<Float>.self)
            acc += e
            i += 8
        }
        var s = acc.sum()
        while i < n {
            let e = Foundation.exp(p[i] - subtract - (minus?[i] ?? 0))
            p[i] = e
            s += e
            i += 1
        }
        return s
    }

    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>.zero
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 8 <= n {
            acc += ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    @inline(__always)
    static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        while i + 8 <= n {
            let v = ry.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + alpha * rx.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            ry.storeBytes(of: v, toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] += alpha * x[i]; i += 1 }
    }
}
