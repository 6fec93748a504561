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
    /// exp for 16 lanes: the portable `NetworkOps.fastExp` (Cephes polynomial, inputs clamped to
    /// [−87.3, 88.3], 2ⁿ from the 1.5·2²³ + 127 rounding), operation for operation.
    @inline(__always)
    fileprivate static func exp16(_ x0: F16) -> F16 {
        let lo = F16(repeating: -87.3), hi = F16(repeating: 88.3)
        var x = x0.replacing(with: lo, where: x0 .< lo)
        x.replace(with: hi, where: x .> hi)
        let magic: Float = 12_583_039
        let t = x * 1.44269504088896341 + magic
        let fx = t - magic
        x = x - fx * 0.693359375 + fx * 2.12194440e-4
        let z = x * x
        var y = F16(repeating: 1.9875691500E-4)
        y = y * x + 1.3981999507E-3
        y = y * x + 8.3334519073E-3
        y = y * x + 4.1665795894E-2
        y = y * x + 1.6666665459E-1
        y = y * x + 5.0000001201E-1
        y = y * z + x + 1
        let pow2 = unsafeBitCast(unsafeBitCast(t, to: SIMD16<UInt32>.self) &<< 23, to: F16.self)
        return y * pow2
    }

    /// dst[i] = act(src[i]·a + o), act = SiLU (v / (1 + exp(−v))) or the identity, for i < n rounded down
    /// to a multiple of 8; returns that count (the caller does the scalar tail). `dst` may be `src`.
    public static func affine(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                              _ a: Float, _ o: Float, silu: Bool) -> Int {
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        let av = F16(repeating: a), ov = F16(repeating: o)
        var j = 0
        if silu {
            while j + 16 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) * av + ov
                d.storeBytes(of: v / (1 + exp16(-v)), toByteOffset: 4 * j, as: F16.self)
                j += 16
            }
            if j + 8 <= n {
                var w = F16(repeating: 0)
                w.lowHalf = s.loadUnaligned(fromByteOffset: 4 * j, as: F8.self)
                let v = w * av + ov
                d.storeBytes(of: (v / (1 + exp16(-v))).lowHalf, toByteOffset: 4 * j, as: F8.self)
                j += 8
            }
        } else {
            while j + 16 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) * av + ov
                d.storeBytes(of: v, toByteOffset: 4 * j, as: F16.self)
                j += 16
            }
            if j + 8 <= n {
                let v = s.loadUnaligned(fromByteOffset: 4 * j, as: F8.self) * a + o
                d.storeBytes(of: v, toByteOffset: 4 * j, as: F8.self)
                j += 8
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
        var s = sum8(s0 + s1)
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
        var q = sum8(q0 + q1)
        while j < n { let d = p[j] - c; q += d * d; j += 1 }
        return (s, q)
    }

    /// `SIMD8<Float>.sum()` in its order (lane 0 + lane 1 + … + lane 7, left to right).
    @inline(__always)
    fileprivate static func sum8(_ v: F8) -> Float {
        var s = v[0]
        for l in 1..<8 { s += v[l] }
        return s
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
