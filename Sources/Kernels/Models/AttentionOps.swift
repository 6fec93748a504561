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
    static func softmaxAttention(qkvT: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, groups: Int, tokens T: Int,
                                 groupStride: Int, tokenStride: Int, heads: Int, dimHead: Int,
                                 rotary: Rotary?, bias: [Float]?) {
        let hidden = heads * dimHead
        let scale = Float(1) / Float(dimHead).squareRoot()
        NetworkOps.parallelFor(groups) { range in
            var q = [Float](repeating: 0, count: T * dimHead), k = q, v = q
            var sim = [Float](repeating: 0, count: T * T)
            var o = [Float](repeating: 0, count: dimHead)
            for g in range {
                for h in 0..<heads {
                    for t in 0..<T {
                        let row = qkvT + (g * groupStride + t * tokenStride) * 3 * hidden + h * dimHead
                        for d in 0..<dimHead {
                            q[t * dimHead + d] = row[d] * scale
                            k[t * dimHead + d] = row[hidden + d]
                            v[t * dimHead + d] = row[2 * hidden + d]
                        }
                        if let r = rotary {
                            for i in 0..<min(r.pairs, dimHead / 2) {
                                let c = r.cos[t * r.pairs + i], s = r.sin[t * r.pairs + i]
                                let q0 = q[t * dimHead + 2 * i], q1 = q[t * dimHead + 2 * i + 1]
                                q[t * dimHead + 2 * i] = q0 * c + (-q1) * s
                                q[t * dimHead + 2 * i + 1] = q1 * c + q0 * s
                                let k0 = k[t * dimHead + 2 * i], k1 = k[t * dimHead + 2 * i + 1]
                                k[t * dimHead + 2 * i] = k0 * c + (-k1) * s
                                k[t * dimHead + 2 * i + 1] = k1 * c + k0 * s
                            }
                        }
                    }
                    for i in 0..<T {
                        var mx = -Float.infinity
                        for j in 0..<T {
                            var s: Float = 0
                            for d in 0..<dimHead { s += q[i * dimHead + d] * k[j * dimHead + d] }
                            if let bias { s += bias[(h * T + i) * T + j] }
                            sim[i * T + j] = s
                            mx = max(mx, s)
                        }
                        var sum: Float = 0
                        for j in 0..<T { let e = Foundation.exp(sim[i * T + j] - mx); sim[i * T + j] = e; sum += e }
                        let inv = 1 / sum
                        for d in 0..<dimHead { o[d] = 0 }
                        for j in 0..<T {
                            let a = sim[i * T + j] * inv
                            for d in 0..<dimHead { o[d] += a * v[j * dimHead + d] }
                        }
                        let orow = out + (g * groupStride + i * tokenStride) * hidden + h * dimHead
                        for d in 0..<dimHead { orow[d] = o[d] }
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
        NetworkOps.parallelFor(F * heads) { range in
            var ctx = [Float](repeating: 0, count: dimHead * dimHead)
            var colMax = [Float](repeating: 0, count: P), colSum = colMax
            for task in range {
                let f = task / heads, h = task % heads
                let q = qkv + (h * dimHead) * N + f * P
                let k = qkv + (hidden + h * dimHead) * N + f * P
                let v = qkv + (2 * hidden + h * dimHead) * N + f * P
                // q: softmax over d for each position.
                for n in 0..<P { colMax[n] = -Float.infinity; colSum[n] = 0 }
                for d in 0..<dimHead { let r = q + d * N; for n in 0..<P { colMax[n] = max(colMax[n], r[n]) } }
                for d in 0..<dimHead { let r = q + d * N; for n in 0..<P { let e = Foundation.exp(r[n] - colMax[n]); r[n] = e; colSum[n] += e } }
                for d in 0..<dimHead { let r = q + d * N; for n in 0..<P { r[n] = r[n] / colSum[n] * scale } }
                // k: softmax over positions for each feature.
                for d in 0..<dimHead {
                    let r = k + d * N
                    var mx = -Float.infinity
                    for n in 0..<P { mx = max(mx, r[n]) }
                    var s: Float = 0
                    for n in 0..<P { let e = Foundation.exp(r[n] - mx); r[n] = e; s += e }
                    let inv = 1 / s
                    for n in 0..<P { r[n] *= inv }
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
                    for n in 0..<P { orow[n] = 0 }
                    for d in 0..<dimHead { axpy(ctx[d * dimHead + e], q + d * N, orow, P) }
                }
            }
        }
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
