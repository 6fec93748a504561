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
    /// Whether the SiLU loops run four independent vectors per iteration (true, default) or one (false:
    /// the previous loop). The same floats either way. Knob `silu4` of `tumorbench networks unet-ab`.
    nonisolated(unsafe) public static var unrolledSiLU = true

    /// dst[i] = act(src[i]·a + o), act = SiLU (v / (1 + exp(−v))) or the identity, for i < n rounded down
    /// to a multiple of 16; returns that count (the caller does the tail). `dst` may be `src`.
    public static func affine(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                              _ a: Float, _ o: Float, silu: Bool) -> Int {
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        let av = F16(repeating: a), ov = F16(repeating: o)
        var j = 0
        if silu {
            // v / (1 + exp(−v)) with the portable `NetworkOps.fastExp` written out operation for operation
            // (Cephes polynomial, input clamped to [−87.3, 88.3], 2ⁿ from the 1.5·2²³ + 127 rounding).
            // One vector's operations form a ~110-cycle dependency chain: four independent vectors per
            // iteration (`unrolledSiLU`) keep the FMA ports busy where one at a time left them waiting on
            // latency (the scheduler's window holds only ~3 iterations). The same operations per element.
            if unrolledSiLU {
                while j + 64 <= n {
                    let v0 = s.loadUnaligned(fromByteOffset: 4 * j, as: F16.self) * av + ov
                    let v1 = s.loadUnaligned(fromByteOffset: 4 * j + 64, as: F16.self) * av + ov
                    let v2 = s.loadUnaligned(fromByteOffset: 4 * j + 128, as: F16.self) * av + ov
                    let v3 = s.loadUnaligned(fromByteOffset: 4 * j + 192, as: F16.self) * av + ov
                    let (r0, r1, r2, r3) = siluVectors4(v0, v1, v2, v3)
                    d.storeBytes(of: r0, toByteOffset: 4 * j, as: F16.self)
                    d.storeBytes(of: r1, toByteOffset: 4 * j + 64, as: F16.self)
                    d.storeBytes(of: r2, toByteOffset: 4 * j + 128, as: F16.self)
                    d.storeBytes(of: r3, toByteOffset: 4 * j + 192, as: F16.self)
                    j += 64
                }
            }
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

/// v / (1 + exp(−v)) with `NetworkOps.fastExp`'s operations (the loop of `NormActivationAVX512.affine`
/// written as a helper; transparent so that its vectors stay in zmm registers).
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

/// `siluVector` of four vectors, their operations interleaved step by step (four independent chains).
@_transparent
func siluVectors4(_ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>, _ v3: SIMD16<Float>)
    -> (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>) {
    typealias F = SIMD16<Float>
    let lo = F(repeating: -87.3), hi = F(repeating: 88.3)
    let magic = F(repeating: 12_583_039), log2e = F(repeating: 1.44269504088896341)
    let c1 = F(repeating: 0.693359375), c2 = F(repeating: 2.12194440e-4)
    let p0 = F(repeating: 1.9875691500E-4), p1 = F(repeating: 1.3981999507E-3)
    let p2 = F(repeating: 8.3334519073E-3), p3 = F(repeating: 4.1665795894E-2)
    let p4 = F(repeating: 1.6666665459E-1), p5 = F(repeating: 5.0000001201E-1)
    let one = F(repeating: 1)
    let n0 = -v0, n1 = -v1, n2 = -v2, n3 = -v3
    var x0 = n0.replacing(with: lo, where: n0 .< lo), x1 = n1.replacing(with: lo, where: n1 .< lo)
    var x2 = n2.replacing(with: lo, where: n2 .< lo), x3 = n3.replacing(with: lo, where: n3 .< lo)
    x0.replace(with: hi, where: x0 .> hi); x1.replace(with: hi, where: x1 .> hi)
    x2.replace(with: hi, where: x2 .> hi); x3.replace(with: hi, where: x3 .> hi)
    let t0 = x0 * log2e + magic, t1 = x1 * log2e + magic, t2 = x2 * log2e + magic, t3 = x3 * log2e + magic
    let f0 = t0 - magic, f1 = t1 - magic, f2 = t2 - magic, f3 = t3 - magic
    x0 = x0 - f0 * c1 + f0 * c2; x1 = x1 - f1 * c1 + f1 * c2
    x2 = x2 - f2 * c1 + f2 * c2; x3 = x3 - f3 * c1 + f3 * c2
    let z0 = x0 * x0, z1 = x1 * x1, z2 = x2 * x2, z3 = x3 * x3
    var y0 = p0 * x0 + p1, y1 = p0 * x1 + p1, y2 = p0 * x2 + p1, y3 = p0 * x3 + p1
    y0 = y0 * x0 + p2; y1 = y1 * x1 + p2; y2 = y2 * x2 + p2; y3 = y3 * x3 + p2
    y0 = y0 * x0 + p3; y1 = y1 * x1 + p3; y2 = y2 * x2 + p3; y3 = y3 * x3 + p3
    y0 = y0 * x0 + p4; y1 = y1 * x1 + p4; y2 = y2 * x2 + p4; y3 = y3 * x3 + p4
    y0 = y0 * x0 + p5; y1 = y1 * x1 + p5; y2 = y2 * x2 + p5; y3 = y3 * x3 + p5
    y0 = y0 * z0 + x0 + one; y1 = y1 * z1 + x1 + one; y2 = y2 * z2 + x2 + one; y3 = y3 * z3 + x3 + one
    let e0 = unsafeBitCast(unsafeBitCast(t0, to: SIMD16<UInt32>.self) &<< 23, to: F.self)
    let e1 = unsafeBitCast(unsafeBitCast(t1, to: SIMD16<UInt32>.self) &<< 23, to: F.self)
    let e2 = unsafeBitCast(unsafeBitCast(t2, to: SIMD16<UInt32>.self) &<< 23, to: F.self)
    let e3 = unsafeBitCast(unsafeBitCast(t3, to: SIMD16<UInt32>.self) &<< 23, to: F.self)
    return (v0 / (one + y0 * e0), v1 / (one + y1 * e1), v2 / (one + y2 * e2), v3 / (one + y3 * e3))
}
