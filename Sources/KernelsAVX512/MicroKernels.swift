// The register-tiled inner loops of the direct convolution (DirectConvolution.swift).
// Written out by hand-unrolled template (scripts/gen_microkernels.py): Swift keeps each
// accumulator in its own zmm register only when it is a separate local variable.

typealias V = SIMD16<Float>

@inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
@inline(__always) func store(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

/// Accumulates a 8×48 tile: `out[r·sp + j] = Σ_c Σ_t w[(c·taps + t)·8 + r] · x[c·cp + off[t] + j]`
/// for r < 8, j < 48, then stores it (rows `sp` floats apart).
@inline(never)
func kernel8x3(_ x: UnsafePointer<Float>, _ cp: Int, _ channels: Int, _ off: UnsafePointer<Int>, _ taps: Int,
                _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ sp: Int) {
    var a00 = V(), a01 = V(), a02 = V()
    var a10 = V(), a11 = V(), a12 = V()
    var a20 = V(), a21 = V(), a22 = V()
    var a30 = V(), a31 = V(), a32 = V()
    var a40 = V(), a41 = V(), a42 = V()
    var a50 = V(), a51 = V(), a52 = V()
    var a60 = V(), a61 = V(), a62 = V()
    var a70 = V(), a71 = V(), a72 = V()
    var wp = w, xc = x
    for _ in 0..<channels {
        for t in 0..<taps {
            let q = xc + off[t]
            let x0 = load(q), x1 = load(q + 16), x2 = load(q + 32)
            var b = V(repeating: wp[0]); a00.addProduct(b, x0); a01.addProduct(b, x1); a02.addProduct(b, x2)
            b = V(repeating: wp[1]); a10.addProduct(b, x0); a11.addProduct(b, x1); a12.addProduct(b, x2)
            b = V(repeating: wp[2]); a20.addProduct(b, x0); a21.addProduct(b, x1); a22.addProduct(b, x2)
            b = V(repeating: wp[3]); a30.addProduct(b, x0); a31.addProduct(b, x1); a32.addProduct(b, x2)
            b = V(repeating: wp[4]); a40.addProduct(b, x0); a41.addProduct(b, x1); a42.addProduct(b, x2)
            b = V(repeating: wp[5]); a50.addProduct(b, x0); a51.addProduct(b, x1); a52.addProduct(b, x2)
            b = V(repeating: wp[6]); a60.addProduct(b, x0); a61.addProduct(b, x1); a62.addProduct(b, x2)
            b = V(repeating: wp[7]); a70.addProduct(b, x0); a71.addProduct(b, x1); a72.addProduct(b, x2)
            wp += 8
        }
        xc += cp
    }
    var o = out; store(o, a00); store(o + 16, a01); store(o + 32, a02)
    o += sp; store(o, a10); store(o + 16, a11); store(o + 32, a12)
    o += sp; store(o, a20); store(o + 16, a21); store(o + 32, a22)
    o += sp; store(o, a30); store(o + 16, a31); store(o + 32, a32)
    o += sp; store(o, a40); store(o + 16, a41); store(o + 32, a42)
    o += sp; store(o, a50); store(o + 16, a51); store(o + 32, a52)
    o += sp; store(o, a60); store(o + 16, a61); store(o + 32, a62)
    o += sp; store(o, a70); store(o + 16, a71); store(o + 32, a72)
}

/// Accumulates a 1×64 tile: `out[r·sp + j] = Σ_c Σ_t w[(c·taps + t)·1 + r] · x[c·cp + off[t] + j]`
/// for r < 1, j < 64, then stores it (rows `sp` floats apart).
@inline(never)
func kernel1x4(_ x: UnsafePointer<Float>, _ cp: Int, _ channels: Int, _ off: UnsafePointer<Int>, _ taps: Int,
                _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ sp: Int) {
    var a00 = V(), a01 = V(), a02 = V(), a03 = V()
    var wp = w, xc = x
    for _ in 0..<channels {
        for t in 0..<taps {
            let q = xc + off[t]
            let x0 = load(q), x1 = load(q + 16), x2 = load(q + 32), x3 = load(q + 48)
            let b = V(repeating: wp[0]); a00.addProduct(b, x0); a01.addProduct(b, x1); a02.addProduct(b, x2); a03.addProduct(b, x3)
            wp += 1
        }
        xc += cp
    }
    let o = out; store(o, a00); store(o + 16, a01); store(o + 32, a02); store(o + 48, a03)
}
