// The elementwise passes of the networks' GroupNorm (+ SiLU) and residual adds (`NetworkOps`),
// compiled for AVX-512. The package's portable build targets baseline x86-64 (SSE2), where these
// loops run 4 lanes at a time; here the same operations run 16 (elementwise) or 8 (the partial
// sums, kept in the portable path's order) lanes wide. Every value is computed with the same IEEE
// operations in the same order as the portable `NetworkOps` loops (no FMA contraction), so the
// results are bit-identical to the portable path's.
//
// Only call these after checking that the CPU has AVX-512F (this module is compiled for it).

private typealias F16 = SIMD16<Float>
private typealias F8 = SIMD8<Float>

public enum NormActivationAVX512 {
    /// dst[i] = act(src[i]·a + o), act = SiLU (v / (1 + exp(−v))) or the identity, for i < n rounded down
    /// to a multiple of 16; returns that count (the caller does the tail). `dst` may be `src`.
    public static func affine(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                              _ a: Float, _ o: Float, silu: Bool) -> Int {
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        let av = F16(repeating: a), ov = F16(repeating: o)
        var j = 0
        if silu {
            // v / (1 + exp(−v)) with the portable `NetworkOps.fastExp` written out operation for operation
            // (`siluVector`, transparent so its vectors stay in zmm registers).
            while j + 16 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) * av + ov
                d.storeBytes(of: siluVector(v), toByteOffset: 4 * j, as: F16.self)
                j += 16
            }
        } else {
            while j + 16 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) * av + ov
                d.storeBytes(of: v, toByteOffset: 4 * j, as: F16.self)
                j += 16
            }
        }
        return j
    }

    /// The two partial sums of `NetworkOps.Moments.add` for n floats at p: (Σ p[j] over whole 16-blocks
    /// and tail as the portable loop adds them, Σ (p[j] − c)² likewise with c = that sum / n).
    /// Same lanes, same order: accumulator 0 takes the first 8 floats of every 16, accumulator 1 the second 8.
    public static func moments(_ p: UnsafePointer<Float>, _ n: Int) -> (sum: Float, centred: Float) {
        let raw = UnsafeRawPointer(p)
        var s0 = F8.zero, s1 = F8.zero
        var j = 0
        while j + 16 <= n {
            let v = raw.loadUnaligned(fromByteOffset: 4 * j, as: F16.self)
            s0 += v.lowHalf
            s1 += v.highHalf
            j += 16
        }
        let sv = s0 + s1
        var s = sv[0] + sv[1] + sv[2] + sv[3] + sv[4] + sv[5] + sv[6] + sv[7]   // `SIMD8.sum()`'s order
        while j < n { s += p[j]; j += 1 }
        let c = s / Float(n)
        var q0 = F8.zero, q1 = F8.zero
        j = 0
        let cv = F16(repeating: c)
        while j + 16 <= n {
            let d = raw.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) - cv
            let dd = d * d
            q0 += dd.lowHalf
            q1 += dd.highHalf
            j += 16
        }
        let qv = q0 + q1
        var q = qv[0] + qv[1] + qv[2] + qv[3] + qv[4] + qv[5] + qv[6] + qv[7]
        while j < n { let d = p[j] - c; q += d * d; j += 1 }
        return (s, q)
    }


    /// d[i] += s[i] for i < n.
    public static func add(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        let dr = UnsafeMutableRawPointer(d), sr = UnsafeRawPointer(s)
        var j = 0
        while j + 16 <= n {
            dr.storeBytes(of: dr.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) + sr.loadUnaligned(fromByteOffset: 4 * j, as: F16.self),
                          toByteOffset: 4 * j, as: F16.self)
            j += 16
        }
        while j < n { d[j] += s[j]; j += 1 }
    }
}

/// v / (1 + exp(−v)) with `NetworkOps.fastExp`'s operations (Cephes polynomial, input clamped to
/// [−87.3, 88.3], 2ⁿ from the 1.5·2²³ + 127 rounding). Transparent: an ordinary helper taking and
/// returning SIMD16 is not inlined and passes its vectors through memory.
@_transparent
func siluVector(_ v: SIMD16<Float>) -> SIMD16<Float> {
    let lo = SIMD16<Float>(repeating: -87.3), hi = SIMD16<Float>(repeating: 88.3)
    let magic = SIMD16<Float>(repeating: 12_583_039), log2e = SIMD16<Float>(repeating: 1.44269504088896341)
    let c1 = SIMD16<Float>(repeating: 0.693359375), c2 = SIMD16<Float>(repeating: 2.12194440e-4)
    let one = SIMD16<Float>(repeating: 1)
    let x0 = -v
    var x = x0.replacing(with: lo, where: x0 .< lo)
    x.replace(with: hi, where: x .> hi)
    let t = x * log2e + magic
    let fx = t - magic
    x = x - fx * c1 + fx * c2
    let z = x * x
    var y = SIMD16<Float>(repeating: 1.9875691500E-4)
    y = y * x + SIMD16<Float>(repeating: 1.3981999507E-3)
    y = y * x + SIMD16<Float>(repeating: 8.3334519073E-3)
    y = y * x + SIMD16<Float>(repeating: 4.1665795894E-2)
    y = y * x + SIMD16<Float>(repeating: 1.6666665459E-1)
    y = y * x + SIMD16<Float>(repeating: 5.0000001201E-1)
    y = y * z + x + one
    let pow2 = unsafeBitCast(unsafeBitCast(t, to: SIMD16<UInt32>.self) &<< 23, to: SIMD16<Float>.self)
    return v / (one + y * pow2)
}
