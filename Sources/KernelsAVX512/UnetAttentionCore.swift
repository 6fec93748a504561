// AVX-512 inner loops of the Unet3D attention blocks (Kernels/Models/UnetAttention.swift calls them
// only after the runtime CPU check; its SIMD8 code is the portable fallback and the reference the
// tests compare against). Positions sit in the 16 lanes of a zmm register.

#if canImport(Glibc)
import Glibc
#endif

public enum UnetAttentionCore {
    public typealias V16 = SIMD16<Float>
    public typealias P = UnsafeMutablePointer<Float>
    public typealias CP = UnsafePointer<Float>

    /// Positions per tile of the temporal attention (one zmm lane per position).
    public static let lanes = 16

    /// Which session-4 kernel changes are on, a bit mask (default 3; 0 = the session-3 kernels;
    /// `tumorbench networks unet-ab --ab attncore=0,3` compares them):
    /// - bit 0 (`gemmPanelTiles`): `gemm` runs 8-row × 3-group register tiles over column panels of B
    ///   (each panel stays in L1 while all of A streams past it) instead of 4 × 4 tiles row block by
    ///   row block;
    /// - bit 1 (`inlineSums`): `gemmNT` and `linearSoftmaxes` reduce vectors with inlined halving sums
    ///   and maxima instead of calls of the generic `SIMD16.sum()` / `.max()` (run in xmm registers).
    /// Every setting computes the same sums, in a different order. The environment variable
    /// `TUMORSTREAM_ATTNCORE_VARIANT` sets the initial value (for whole-process comparisons such as
    /// `tumorbench networks unet-profile`). All kernels run fastest on 64-byte-aligned operands: a
    /// 16-byte offset of every operand costs `gemm` 13–19% and `gemmNT` 45% (cache-line splits).
    nonisolated(unsafe) public static var variant: Int = {
        #if canImport(Glibc)
        if let e = getenv("TUMORSTREAM_ATTNCORE_VARIANT"), let v = Int(String(cString: e)) { return v }
        #endif
        return 3
    }()
    public static let gemmPanelTiles = 1, inlineSums = 2

    @inline(__always) static func ld(_ p: CP) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
    @inline(__always) static func ld(_ p: P) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
    @inline(__always) static func st(_ p: P, _ v: V16) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self) }

    /// `NetworkOps.fastExp` for 16 lanes: the same Cephes polynomial and range reduction, evaluated
    /// with fused multiply-adds (results differ from the SIMD8 version in the last bit or so).
    /// Compare + select for the clamp: `pointwiseMin/Max` are per-lane scalar code even here.
    @_transparent
    public static func exp16(_ x0: V16) -> V16 {
        let lo = V16(repeating: -87.3), hi = V16(repeating: 88.3)
        var x = x0.replacing(with: lo, where: x0 .< lo)
        x.replace(with: hi, where: x .> hi)
        let magic = V16(repeating: 12_583_039)   // 1.5·2²³ + 127
        let t = magic.addingProduct(x, V16(repeating: 1.44269504088896341))
        let fx = t - magic
        x = x.addingProduct(fx, V16(repeating: -0.693359375)).addingProduct(fx, V16(repeating: 2.12194440e-4))
        let z = x * x
        var y = V16(repeating: 1.3981999507E-3).addingProduct(V16(repeating: 1.9875691500E-4), x)
        y = V16(repeating: 8.3334519073E-3).addingProduct(y, x)
        y = V16(repeating: 4.1665795894E-2).addingProduct(y, x)
        y = V16(repeating: 1.6666665459E-1).addingProduct(y, x)
        y = V16(repeating: 5.0000001201E-1).addingProduct(y, x)
        y = (x + 1).addingProduct(y, z)
        let pow2 = unsafeBitCast(unsafeBitCast(t, to: SIMD16<UInt32>.self) &<< 23, to: V16.self)
        return y * pow2
    }

    // MARK: - small GEMM, 16-column groups

    /// C (M × N) (+)= A (M × K, row stride `lda`) · B (K × N, row stride `ldb`) for N a multiple of 16.
    /// Column group g (columns 16g ..< 16g + 16) of row r of C starts at `c + r·ldc + g·groupStride`
    /// (`groupStride` 16: an ordinary row-major C), so a tile's columns can be scattered into frames.
    /// Adds to C when `accumulate`, else overwrites it.
    public static func gemm(M: Int, N: Int, K: Int, a: CP, lda: Int, b: CP, ldb: Int,
                            c: P, ldc: Int, groupStride gs: Int, accumulate: Bool) {
        precondition(N % 16 == 0, "UnetAttentionCore.gemm: N = \(N) is not a multiple of 16")
        if variant & gemmPanelTiles != 0 {
            gemmPanels(M: M, N: N, K: K, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, groupStride: gs, accumulate: accumulate)
            return
        }
        let groups = N / 16
        var r = 0
        while r + 4 <= M {
            var g = 0
            while g + 4 <= groups {
                tile4x4(a + r * lda, lda, b + 16 * g, ldb, K, c + r * ldc + g * gs, ldc, gs, accumulate)
                g += 4
            }
            while g < groups {
                tile4x1(a + r * lda, lda, b + 16 * g, ldb, K, c + r * ldc + g * gs, ldc, accumulate)
                g += 1
            }
            r += 4
        }
        while r < M {
            var g = 0
            while g + 4 <= groups {
                tile1x4(a + r * lda, b + 16 * g, ldb, K, c + r * ldc + g * gs, gs, accumulate)
                g += 4
            }
            while g < groups {
                tile1x1(a + r * lda, b + 16 * g, ldb, K, c + r * ldc + g * gs, accumulate)
                g += 1
            }
            r += 1
        }
    }

    /// `gemm` over column panels of 3 groups (48 columns): each panel of B (K × 48) is loaded from L2
    /// once and reused from L1 by every 8-row block of A (24 accumulators, 3 B vectors and one
    /// broadcast: 28 of the 32 zmm registers; per k 11 loads for 24 FMAs instead of 8 for 16).
    /// Rows left over after the 8-row blocks go through 4 × 3 and 1 × 3 tiles, groups left over
    /// after the panels through 8 × 1, 4 × 1 and 1 × 1 tiles.
    static func gemmPanels(M: Int, N: Int, K: Int, a: CP, lda: Int, b: CP, ldb: Int,
                           c: P, ldc: Int, groupStride gs: Int, accumulate: Bool) {
        let groups = N / 16
        var g = 0
        while g + 3 <= groups {
            let bg = b + 16 * g, cg = c + g * gs
            var r = 0
            while r + 8 <= M { tile8x3(a + r * lda, lda, bg, ldb, K, cg + r * ldc, ldc, gs, accumulate); r += 8 }
            if r + 4 <= M { tile4x3(a + r * lda, lda, bg, ldb, K, cg + r * ldc, ldc, gs, accumulate); r += 4 }
            while r < M { tile1x3(a + r * lda, bg, ldb, K, cg + r * ldc, gs, accumulate); r += 1 }
            g += 3
        }
        while g < groups {
            let bg = b + 16 * g, cg = c + g * gs
            var r = 0
            while r + 8 <= M { tile8x1(a + r * lda, lda, bg, ldb, K, cg + r * ldc, ldc, accumulate); r += 8 }
            if r + 4 <= M { tile4x1(a + r * lda, lda, bg, ldb, K, cg + r * ldc, ldc, accumulate); r += 4 }
            while r < M { tile1x1(a + r * lda, bg, ldb, K, cg + r * ldc, accumulate); r += 1 }
            g += 1
        }
    }

    @inline(never)
    static func tile8x3(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ gs: Int, _ acc: Bool) {
        var c00 = V16(), c01 = V16(), c02 = V16(), c10 = V16(), c11 = V16(), c12 = V16()
        var c20 = V16(), c21 = V16(), c22 = V16(), c30 = V16(), c31 = V16(), c32 = V16()
        var c40 = V16(), c41 = V16(), c42 = V16(), c50 = V16(), c51 = V16(), c52 = V16()
        var c60 = V16(), c61 = V16(), c62 = V16(), c70 = V16(), c71 = V16(), c72 = V16()
        var bp = b
        let a4 = a + 4 * lda
        for k in 0..<K {
            let b0 = ld(bp), b1 = ld(bp + 16), b2 = ld(bp + 32)
            var w = V16(repeating: a[k]); c00.addProduct(w, b0); c01.addProduct(w, b1); c02.addProduct(w, b2)
            w = V16(repeating: a[lda + k]); c10.addProduct(w, b0); c11.addProduct(w, b1); c12.addProduct(w, b2)
            w = V16(repeating: a[2 * lda + k]); c20.addProduct(w, b0); c21.addProduct(w, b1); c22.addProduct(w, b2)
            w = V16(repeating: a[3 * lda + k]); c30.addProduct(w, b0); c31.addProduct(w, b1); c32.addProduct(w, b2)
            w = V16(repeating: a4[k]); c40.addProduct(w, b0); c41.addProduct(w, b1); c42.addProduct(w, b2)
            w = V16(repeating: a4[lda + k]); c50.addProduct(w, b0); c51.addProduct(w, b1); c52.addProduct(w, b2)
            w = V16(repeating: a4[2 * lda + k]); c60.addProduct(w, b0); c61.addProduct(w, b1); c62.addProduct(w, b2)
            w = V16(repeating: a4[3 * lda + k]); c70.addProduct(w, b0); c71.addProduct(w, b1); c72.addProduct(w, b2)
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        var o = c
        put(o, c00); put(o + gs, c01); put(o + 2 * gs, c02); o += ldc
        put(o, c10); put(o + gs, c11); put(o + 2 * gs, c12); o += ldc
        put(o, c20); put(o + gs, c21); put(o + 2 * gs, c22); o += ldc
        put(o, c30); put(o + gs, c31); put(o + 2 * gs, c32); o += ldc
        put(o, c40); put(o + gs, c41); put(o + 2 * gs, c42); o += ldc
        put(o, c50); put(o + gs, c51); put(o + 2 * gs, c52); o += ldc
        put(o, c60); put(o + gs, c61); put(o + 2 * gs, c62); o += ldc
        put(o, c70); put(o + gs, c71); put(o + 2 * gs, c72)
    }

    @inline(never)
    static func tile4x3(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ gs: Int, _ acc: Bool) {
        var c00 = V16(), c01 = V16(), c02 = V16(), c10 = V16(), c11 = V16(), c12 = V16()
        var c20 = V16(), c21 = V16(), c22 = V16(), c30 = V16(), c31 = V16(), c32 = V16()
        var bp = b
        for k in 0..<K {
            let b0 = ld(bp), b1 = ld(bp + 16), b2 = ld(bp + 32)
            var w = V16(repeating: a[k]); c00.addProduct(w, b0); c01.addProduct(w, b1); c02.addProduct(w, b2)
            w = V16(repeating: a[lda + k]); c10.addProduct(w, b0); c11.addProduct(w, b1); c12.addProduct(w, b2)
            w = V16(repeating: a[2 * lda + k]); c20.addProduct(w, b0); c21.addProduct(w, b1); c22.addProduct(w, b2)
            w = V16(repeating: a[3 * lda + k]); c30.addProduct(w, b0); c31.addProduct(w, b1); c32.addProduct(w, b2)
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        var o = c
        put(o, c00); put(o + gs, c01); put(o + 2 * gs, c02); o += ldc
        put(o, c10); put(o + gs, c11); put(o + 2 * gs, c12); o += ldc
        put(o, c20); put(o + gs, c21); put(o + 2 * gs, c22); o += ldc
        put(o, c30); put(o + gs, c31); put(o + 2 * gs, c32)
    }

    @inline(never)
    static func tile1x3(_ a: CP, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ gs: Int, _ acc: Bool) {
        var c0 = V16(), c1 = V16(), c2 = V16()
        var bp = b
        for k in 0..<K {
            let w = V16(repeating: a[k])
            c0.addProduct(w, ld(bp)); c1.addProduct(w, ld(bp + 16)); c2.addProduct(w, ld(bp + 32))
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        put(c, c0); put(c + gs, c1); put(c + 2 * gs, c2)
    }

    @inline(never)
    static func tile8x1(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ acc: Bool) {
        var c0 = V16(), c1 = V16(), c2 = V16(), c3 = V16(), c4 = V16(), c5 = V16(), c6 = V16(), c7 = V16()
        var bp = b
        let a4 = a + 4 * lda
        for k in 0..<K {
            let b0 = ld(bp)
            c0.addProduct(V16(repeating: a[k]), b0); c1.addProduct(V16(repeating: a[lda + k]), b0)
            c2.addProduct(V16(repeating: a[2 * lda + k]), b0); c3.addProduct(V16(repeating: a[3 * lda + k]), b0)
            c4.addProduct(V16(repeating: a4[k]), b0); c5.addProduct(V16(repeating: a4[lda + k]), b0)
            c6.addProduct(V16(repeating: a4[2 * lda + k]), b0); c7.addProduct(V16(repeating: a4[3 * lda + k]), b0)
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        put(c, c0); put(c + ldc, c1); put(c + 2 * ldc, c2); put(c + 3 * ldc, c3)
        let c4p = c + 4 * ldc
        put(c4p, c4); put(c4p + ldc, c5); put(c4p + 2 * ldc, c6); put(c4p + 3 * ldc, c7)
    }

    @inline(never)
    static func tile4x4(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ gs: Int, _ acc: Bool) {
        var c00 = V16(), c01 = V16(), c02 = V16(), c03 = V16()
        var c10 = V16(), c11 = V16(), c12 = V16(), c13 = V16()
        var c20 = V16(), c21 = V16(), c22 = V16(), c23 = V16()
        var c30 = V16(), c31 = V16(), c32 = V16(), c33 = V16()
        var bp = b
        for k in 0..<K {
            let b0 = ld(bp), b1 = ld(bp + 16), b2 = ld(bp + 32), b3 = ld(bp + 48)
            var w = V16(repeating: a[k]); c00.addProduct(w, b0); c01.addProduct(w, b1); c02.addProduct(w, b2); c03.addProduct(w, b3)
            w = V16(repeating: a[lda + k]); c10.addProduct(w, b0); c11.addProduct(w, b1); c12.addProduct(w, b2); c13.addProduct(w, b3)
            w = V16(repeating: a[2 * lda + k]); c20.addProduct(w, b0); c21.addProduct(w, b1); c22.addProduct(w, b2); c23.addProduct(w, b3)
            w = V16(repeating: a[3 * lda + k]); c30.addProduct(w, b0); c31.addProduct(w, b1); c32.addProduct(w, b2); c33.addProduct(w, b3)
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        var o = c
        put(o, c00); put(o + gs, c01); put(o + 2 * gs, c02); put(o + 3 * gs, c03); o += ldc
        put(o, c10); put(o + gs, c11); put(o + 2 * gs, c12); put(o + 3 * gs, c13); o += ldc
        put(o, c20); put(o + gs, c21); put(o + 2 * gs, c22); put(o + 3 * gs, c23); o += ldc
        put(o, c30); put(o + gs, c31); put(o + 2 * gs, c32); put(o + 3 * gs, c33)
    }

    @inline(never)
    static func tile4x1(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ acc: Bool) {
        var c0 = V16(), c1 = V16(), c2 = V16(), c3 = V16()
        var bp = b
        for k in 0..<K {
            let b0 = ld(bp)
            c0.addProduct(V16(repeating: a[k]), b0); c1.addProduct(V16(repeating: a[lda + k]), b0)
            c2.addProduct(V16(repeating: a[2 * lda + k]), b0); c3.addProduct(V16(repeating: a[3 * lda + k]), b0)
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        put(c, c0); put(c + ldc, c1); put(c + 2 * ldc, c2); put(c + 3 * ldc, c3)
    }

    @inline(never)
    static func tile1x4(_ a: CP, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ gs: Int, _ acc: Bool) {
        var c0 = V16(), c1 = V16(), c2 = V16(), c3 = V16()
        var bp = b
        for k in 0..<K {
            let w = V16(repeating: a[k])
            c0.addProduct(w, ld(bp)); c1.addProduct(w, ld(bp + 16)); c2.addProduct(w, ld(bp + 32)); c3.addProduct(w, ld(bp + 48))
            bp += ldb
        }
        @inline(__always) func put(_ p: P, _ v: V16) { st(p, acc ? ld(p) + v : v) }
        put(c, c0); put(c + gs, c1); put(c + 2 * gs, c2); put(c + 3 * gs, c3)
    }

    @inline(never)
    static func tile1x1(_ a: CP, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ acc: Bool) {
        var c0 = V16()
        var bp = b
        for k in 0..<K { c0.addProduct(V16(repeating: a[k]), ld(bp)); bp += ldb }
        st(c, acc ? ld(c) + c0 : c0)
    }

    /// C (M × N) = A (M × K, row stride `lda`) · Bᵀ (B: N × K, row stride `ldb`) for K a multiple of 16:
    /// dot products of rows (the spatial linear attention's contexts, K = the positions of a frame).
    public static func gemmNT(M: Int, N: Int, K: Int, a: CP, lda: Int, b: CP, ldb: Int, c: P, ldc: Int) {
        precondition(K % 16 == 0, "UnetAttentionCore.gemmNT: K = \(K) is not a multiple of 16")
        let tree = variant & inlineSums != 0
        var r = 0
        while r + 4 <= M {
            var j = 0
            while j + 4 <= N {
                if tree {
                    dots4x4Inline(a + r * lda, lda, b + j * ldb, ldb, K, c + r * ldc + j, ldc)
                } else {
                    dots4x4(a + r * lda, lda, b + j * ldb, ldb, K, c + r * ldc + j, ldc)
                }
                j += 4
            }
            while j < N { for i in r..<r + 4 { c[i * ldc + j] = dot(a + i * lda, b + j * ldb, K) }; j += 1 }
            r += 4
        }
        while r < M {
            for j in 0..<N { c[r * ldc + j] = dot(a + r * lda, b + j * ldb, K) }
            r += 1
        }
    }

    @inline(__always)
    static func dot(_ a: CP, _ b: CP, _ K: Int) -> Float {
        var acc = V16()
        var k = 0
        while k < K { acc.addProduct(ld(a + k), ld(b + k)); k += 16 }
        return hsum(acc)
    }

    /// Sum of the 16 lanes, inlined (`SIMD16.sum()` is a generic call that runs in xmm registers).
    @_transparent
    static func hsum(_ v: V16) -> Float {
        let h8 = v.lowHalf + v.highHalf
        let h4 = h8.lowHalf + h8.highHalf
        let h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }

    /// Maximum of the 16 lanes, inlined (compare + select: `SIMD16.max()` is a generic call).
    @_transparent
    static func hmax(_ v: V16) -> Float {
        var h8 = v.lowHalf
        let u8 = v.highHalf
        h8.replace(with: u8, where: u8 .> h8)
        var h4 = h8.lowHalf
        let u4 = h8.highHalf
        h4.replace(with: u4, where: u4 .> h4)
        var h2 = h4.lowHalf
        let u2 = h4.highHalf
        h2.replace(with: u2, where: u2 .> h2)
        return h2[1] > h2[0] ? h2[1] : h2[0]
    }

    /// `dots4x4` with inlined horizontal sums (`hsum`) of the 16 partial-sum vectors.
    @inline(never)
    static func dots4x4Inline(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int) {
        var c00 = V16(), c01 = V16(), c02 = V16(), c03 = V16()
        var c10 = V16(), c11 = V16(), c12 = V16(), c13 = V16()
        var c20 = V16(), c21 = V16(), c22 = V16(), c23 = V16()
        var c30 = V16(), c31 = V16(), c32 = V16(), c33 = V16()
        var k = 0
        while k < K {
            let b0 = ld(b + k), b1 = ld(b + ldb + k), b2 = ld(b + 2 * ldb + k), b3 = ld(b + 3 * ldb + k)
            var x = ld(a + k); c00.addProduct(x, b0); c01.addProduct(x, b1); c02.addProduct(x, b2); c03.addProduct(x, b3)
            x = ld(a + lda + k); c10.addProduct(x, b0); c11.addProduct(x, b1); c12.addProduct(x, b2); c13.addProduct(x, b3)
            x = ld(a + 2 * lda + k); c20.addProduct(x, b0); c21.addProduct(x, b1); c22.addProduct(x, b2); c23.addProduct(x, b3)
            x = ld(a + 3 * lda + k); c30.addProduct(x, b0); c31.addProduct(x, b1); c32.addProduct(x, b2); c33.addProduct(x, b3)
            k += 16
        }
        c[0] = hsum(c00); c[1] = hsum(c01); c[2] = hsum(c02); c[3] = hsum(c03)
        c[ldc] = hsum(c10); c[ldc + 1] = hsum(c11); c[ldc + 2] = hsum(c12); c[ldc + 3] = hsum(c13)
        c[2 * ldc] = hsum(c20); c[2 * ldc + 1] = hsum(c21); c[2 * ldc + 2] = hsum(c22); c[2 * ldc + 3] = hsum(c23)
        c[3 * ldc] = hsum(c30); c[3 * ldc + 1] = hsum(c31); c[3 * ldc + 2] = hsum(c32); c[3 * ldc + 3] = hsum(c33)
    }

    @inline(never)
    static func dots4x4(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int) {
        var c00 = V16(), c01 = V16(), c02 = V16(), c03 = V16()
        var c10 = V16(), c11 = V16(), c12 = V16(), c13 = V16()
        var c20 = V16(), c21 = V16(), c22 = V16(), c23 = V16()
        var c30 = V16(), c31 = V16(), c32 = V16(), c33 = V16()
        var k = 0
        while k < K {
            let b0 = ld(b + k), b1 = ld(b + ldb + k), b2 = ld(b + 2 * ldb + k), b3 = ld(b + 3 * ldb + k)
            var x = ld(a + k); c00.addProduct(x, b0); c01.addProduct(x, b1); c02.addProduct(x, b2); c03.addProduct(x, b3)
            x = ld(a + lda + k); c10.addProduct(x, b0); c11.addProduct(x, b1); c12.addProduct(x, b2); c13.addProduct(x, b3)
            x = ld(a + 2 * lda + k); c20.addProduct(x, b0); c21.addProduct(x, b1); c22.addProduct(x, b2); c23.addProduct(x, b3)
            x = ld(a + 3 * lda + k); c30.addProduct(x, b0); c31.addProduct(x, b1); c32.addProduct(x, b2); c33.addProduct(x, b3)
            k += 16
        }
        c[0] = c00.sum(); c[1] = c01.sum(); c[2] = c02.sum(); c[3] = c03.sum()
        c[ldc] = c10.sum(); c[ldc + 1] = c11.sum(); c[ldc + 2] = c12.sum(); c[ldc + 3] = c13.sum()
        c[2 * ldc] = c20.sum(); c[2 * ldc + 1] = c21.sum(); c[2 * ldc + 2] = c22.sum(); c[2 * ldc + 3] = c23.sum()
        c[3 * ldc] = c30.sum(); c[3 * ldc + 1] = c31.sum(); c[3 * ldc + 2] = c32.sum(); c[3 * ldc + 3] = c33.sum()
    }

    // MARK: - temporal attention core

    /// One head of softmax attention along the F frames of a tile of 16 positions, in the channel-major
    /// tile layout: feature row r, frame t, lane l at `row_r[16t + l]`, rows T = 16F apart. q and k
    /// (dh rows each) are scaled (q by `scale`) and rotated in place (pairs (2i, 2i+1), i < `pairs`,
    /// angles `cos/sin[t·tablePairs + i]`); the values are `dv` rows at `v` (the head's v, or the
    /// normalised input itself when the value projection is folded into the output projection):
    /// out[e·T + 16i + l] = Σ_j softmax_j(q_i · k_j + bias[i·F + j]) v[e][j]. `s` holds F·F·16 floats.
    public static func temporalHead(q: P, k: P, v: CP, frames F: Int, dimHead dh: Int, valueRows dv: Int,
                                    out o: P, scale: Float, cos: CP?, sin: CP?, tablePairs: Int, pairs: Int,
                                    bias: CP?, s: P) {
        let L = 16, T = F * L
        let sc = V16(repeating: scale)
        for d in 0..<dh {
            let row = q + d * T
            for t in 0..<F { st(row + t * L, ld(row + t * L) * sc) }
        }
        if let cos, let sin {
            for t in 0..<F {
                for i in 0..<pairs {
                    let c = V16(repeating: cos[t * tablePairs + i]), sn = V16(repeating: sin[t * tablePairs + i])
                    let q0p = q + 2 * i * T + t * L, q1p = q0p + T
                    let q0 = ld(q0p), q1 = ld(q1p)
                    st(q0p, q0 * c + (-q1) * sn)
                    st(q1p, q1 * c + q0 * sn)
                    let k0p = k + 2 * i * T + t * L, k1p = k0p + T
                    let k0 = ld(k0p), k1 = ld(k1p)
                    st(k0p, k0 * c + (-k1) * sn)
                    st(k1p, k1 * c + k0 * sn)
                }
            }
        }
        // Scores s[(i·F + j)·16 + l] = q_i · k_j in 6×4 register blocks (k and q are read from L2 a few
        // times per head instead of once per row).
        @inline(__always) func score(_ i: Int, _ j: Int) {
            var a = V16()
            var qp = q + i * L, kp = k + j * L
            for _ in 0..<dh { a.addProduct(ld(qp), ld(kp)); qp += T; kp += T }
            st(s + (i * F + j) * L, a)
        }
        var i0 = 0
        while i0 + 6 <= F {
            var j0 = 0
            while j0 + 4 <= F { scores6x4(q, k, T, dh, F, i0, j0, s); j0 += 4 }
            while j0 < F { for i in i0..<i0 + 6 { score(i, j0) }; j0 += 1 }
            i0 += 6
        }
        for i in i0..<F { for j in 0..<F { score(i, j) } }
        // Bias and softmax over j, per row.
        for i in 0..<F {
            let row = s + i * F * L
            var mx = V16(repeating: -.infinity)
            for j in 0..<F {
                var x = ld(row + j * L)
                if let bias { x += bias[i * F + j] }
                st(row + j * L, x)
                mx = mx.replacing(with: x, where: x .> mx)
            }
            var sum = V16()
            for j in 0..<F {
                let e = exp16(ld(row + j * L) - mx)
                st(row + j * L, e)
                sum += e
            }
            let inv = 1 / sum
            for j in 0..<F { st(row + j * L, ld(row + j * L) * inv) }
        }
        // o[e][i] = Σ_j p[i][j] v[e][j], in 6×4 blocks (i × e).
        @inline(__always) func value(_ i: Int, _ e: Int) {
            var a = V16()
            var pp = s + i * F * L, vp = v + e * T
            for _ in 0..<F { a.addProduct(ld(pp), ld(vp)); pp += L; vp += L }
            st(o + e * T + i * L, a)
        }
        i0 = 0
        while i0 + 6 <= F {
            var e0 = 0
            while e0 + 4 <= dv { values6x4(s, v, T, F, i0, e0, o); e0 += 4 }
            while e0 < dv { for i in i0..<i0 + 6 { value(i, e0) }; e0 += 1 }
            i0 += 6
        }
        for i in i0..<F { for e in 0..<dv { value(i, e) } }
    }

    /// Scores of a 6×4 block: s[((i0 + r)·F + j0 + u)·16 + l] = Σ_d q[d][i0 + r][l] · k[d][j0 + u][l].
    @inline(never)
    static func scores6x4(_ q: CP, _ k: CP, _ T: Int, _ dh: Int, _ F: Int, _ i0: Int, _ j0: Int, _ s: P) {
        var a00 = V16(), a01 = V16(), a02 = V16(), a03 = V16()
        var a10 = V16(), a11 = V16(), a12 = V16(), a13 = V16()
        var a20 = V16(), a21 = V16(), a22 = V16(), a23 = V16()
        var a30 = V16(), a31 = V16(), a32 = V16(), a33 = V16()
        var a40 = V16(), a41 = V16(), a42 = V16(), a43 = V16()
        var a50 = V16(), a51 = V16(), a52 = V16(), a53 = V16()
        var qp = q + i0 * 16, kp = k + j0 * 16
        for _ in 0..<dh {
            let k0 = ld(kp + 0), k1 = ld(kp + 16), k2 = ld(kp + 32), k3 = ld(kp + 48)
            do { let x = ld(qp + 0); a00.addProduct(x, k0); a01.addProduct(x, k1); a02.addProduct(x, k2); a03.addProduct(x, k3) }
            do { let x = ld(qp + 16); a10.addProduct(x, k0); a11.addProduct(x, k1); a12.addProduct(x, k2); a13.addProduct(x, k3) }
            do { let x = ld(qp + 32); a20.addProduct(x, k0); a21.addProduct(x, k1); a22.addProduct(x, k2); a23.addProduct(x, k3) }
            do { let x = ld(qp + 48); a30.addProduct(x, k0); a31.addProduct(x, k1); a32.addProduct(x, k2); a33.addProduct(x, k3) }
            do { let x = ld(qp + 64); a40.addProduct(x, k0); a41.addProduct(x, k1); a42.addProduct(x, k2); a43.addProduct(x, k3) }
            do { let x = ld(qp + 80); a50.addProduct(x, k0); a51.addProduct(x, k1); a52.addProduct(x, k2); a53.addProduct(x, k3) }
            qp += T; kp += T
        }
        do { let o = s + ((i0 + 0) * F + j0) * 16; st(o + 0, a00); st(o + 16, a01); st(o + 32, a02); st(o + 48, a03) }
        do { let o = s + ((i0 + 1) * F + j0) * 16; st(o + 0, a10); st(o + 16, a11); st(o + 32, a12); st(o + 48, a13) }
        do { let o = s + ((i0 + 2) * F + j0) * 16; st(o + 0, a20); st(o + 16, a21); st(o + 32, a22); st(o + 48, a23) }
        do { let o = s + ((i0 + 3) * F + j0) * 16; st(o + 0, a30); st(o + 16, a31); st(o + 32, a32); st(o + 48, a33) }
        do { let o = s + ((i0 + 4) * F + j0) * 16; st(o + 0, a40); st(o + 16, a41); st(o + 32, a42); st(o + 48, a43) }
        do { let o = s + ((i0 + 5) * F + j0) * 16; st(o + 0, a50); st(o + 16, a51); st(o + 32, a52); st(o + 48, a53) }
    }

    /// Outputs of a 6×4 block: o[(e0 + u)·T + (i0 + r)·16 + l] = Σ_j p[((i0 + r)·F + j)·16 + l] · v[e0 + u][j][l].
    @inline(never)
    static func values6x4(_ p: CP, _ v: CP, _ T: Int, _ F: Int, _ i0: Int, _ e0: Int, _ o: P) {
        var a00 = V16(), a01 = V16(), a02 = V16(), a03 = V16()
        var a10 = V16(), a11 = V16(), a12 = V16(), a13 = V16()
        var a20 = V16(), a21 = V16(), a22 = V16(), a23 = V16()
        var a30 = V16(), a31 = V16(), a32 = V16(), a33 = V16()
        var a40 = V16(), a41 = V16(), a42 = V16(), a43 = V16()
        var a50 = V16(), a51 = V16(), a52 = V16(), a53 = V16()
        var pp = p + i0 * F * 16, vp = v + e0 * T
        for _ in 0..<F {
            let v0 = ld(vp + 0 * T), v1 = ld(vp + 1 * T), v2 = ld(vp + 2 * T), v3 = ld(vp + 3 * T)
            do { let x = ld(pp + 0 * F * 16); a00.addProduct(x, v0); a01.addProduct(x, v1); a02.addProduct(x, v2); a03.addProduct(x, v3) }
            do { let x = ld(pp + 1 * F * 16); a10.addProduct(x, v0); a11.addProduct(x, v1); a12.addProduct(x, v2); a13.addProduct(x, v3) }
            do { let x = ld(pp + 2 * F * 16); a20.addProduct(x, v0); a21.addProduct(x, v1); a22.addProduct(x, v2); a23.addProduct(x, v3) }
            do { let x = ld(pp + 3 * F * 16); a30.addProduct(x, v0); a31.addProduct(x, v1); a32.addProduct(x, v2); a33.addProduct(x, v3) }
            do { let x = ld(pp + 4 * F * 16); a40.addProduct(x, v0); a41.addProduct(x, v1); a42.addProduct(x, v2); a43.addProduct(x, v3) }
            do { let x = ld(pp + 5 * F * 16); a50.addProduct(x, v0); a51.addProduct(x, v1); a52.addProduct(x, v2); a53.addProduct(x, v3) }
            pp += 16; vp += 16
        }
        do { let b = o + e0 * T + (i0 + 0) * 16; st(b + 0 * T, a00); st(b + 1 * T, a01); st(b + 2 * T, a02); st(b + 3 * T, a03) }
        do { let b = o + e0 * T + (i0 + 1) * 16; st(b + 0 * T, a10); st(b + 1 * T, a11); st(b + 2 * T, a12); st(b + 3 * T, a13) }
        do { let b = o + e0 * T + (i0 + 2) * 16; st(b + 0 * T, a20); st(b + 1 * T, a21); st(b + 2 * T, a22); st(b + 3 * T, a23) }
        do { let b = o + e0 * T + (i0 + 3) * 16; st(b + 0 * T, a30); st(b + 1 * T, a31); st(b + 2 * T, a32); st(b + 3 * T, a33) }
        do { let b = o + e0 * T + (i0 + 4) * 16; st(b + 0 * T, a40); st(b + 1 * T, a41); st(b + 2 * T, a42); st(b + 3 * T, a43) }
        do { let b = o + e0 * T + (i0 + 5) * 16; st(b + 0 * T, a50); st(b + 1 * T, a51); st(b + 2 * T, a52); st(b + 3 * T, a53) }
    }

    // MARK: - spatial linear attention softmaxes

    /// Loads n < 16 floats into lanes 0..<n (others `fill`).
    @inline(__always) static func ldPartial(_ p: CP, _ n: Int, fill: Float) -> V16 {
        var v = V16(repeating: fill)
        for l in 0..<n { v[l] = p[l] }
        return v
    }

    @inline(__always) static func stPartial(_ p: P, _ v: V16, _ n: Int) {
        for l in 0..<n { p[l] = v[l] }
    }

    /// One head of the spatial linear attention, in place on rows of `n` positions (row stride `n`):
    /// q (dh rows): softmax over the dh features at each position, × `scale`; k (dh rows): softmax
    /// over the positions of each row.
    public static func linearSoftmaxes(q: P, k: P, positions n: Int, dimHead dh: Int, scale: Float) {
        let full = n / 16 * 16, rest = n - full
        // q: per position (lanes), over the dh rows.
        var i = 0
        while i < full {
            var mx = ld(q + i)
            for d in 1..<dh { let x = ld(q + d * n + i); mx = mx.replacing(with: x, where: x .> mx) }
            var sum = V16()
            for d in 0..<dh {
                let e = exp16(ld(q + d * n + i) - mx)
                st(q + d * n + i, e)
                sum += e
            }
            let f = scale / sum
            for d in 0..<dh { st(q + d * n + i, ld(q + d * n + i) * f) }
            i += 16
        }
        if rest > 0 {
            var mx = ldPartial(q + full, rest, fill: 0)
            for d in 1..<dh { let x = ldPartial(q + d * n + full, rest, fill: 0); mx = mx.replacing(with: x, where: x .> mx) }
            var sum = V16()
            for d in 0..<dh {
                let e = exp16(ldPartial(q + d * n + full, rest, fill: 0) - mx)
                stPartial(q + d * n + full, e, rest)
                sum += e
            }
            let f = scale / sum
            for d in 0..<dh { stPartial(q + d * n + full, ldPartial(q + d * n + full, rest, fill: 0) * f, rest) }
        }
        // k: per row, over the positions.
        let inline = variant & inlineSums != 0
        for d in 0..<dh {
            let r = k + d * n
            var mx = V16(repeating: -.infinity)
            var j = 0
            while j < full { let x = ld(r + j); mx = mx.replacing(with: x, where: x .> mx); j += 16 }
            if rest > 0 { let x = ldPartial(r + full, rest, fill: -.infinity); mx = mx.replacing(with: x, where: x .> mx) }
            let m = inline ? hmax(mx) : mx.max()
            var acc = V16()
            j = 0
            while j < full {
                let e = exp16(ld(r + j) - m)
                st(r + j, e)
                acc += e
                j += 16
            }
            if rest > 0 {
                var e = exp16(ldPartial(r + full, rest, fill: 0) - m)
                for l in rest..<16 { e[l] = 0 }
                stPartial(r + full, e, rest)
                acc += e
            }
            let inv = V16(repeating: 1 / (inline ? hsum(acc) : acc.sum()))
            j = 0
            while j < full { st(r + j, ld(r + j) * inv); j += 16 }
            if rest > 0 { stPartial(r + full, ldPartial(r + full, rest, fill: 0) * inv, rest) }
        }
    }
}
