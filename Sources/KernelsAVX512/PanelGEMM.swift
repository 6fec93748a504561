// AVX-512 GEMM of the whole-output im2col convolutions (Kernels/WholeIm2colConvolution.swift calls it
// only after the runtime CPU check; the OpenBLAS path there is the portable fallback and the reference
// the tests compare against).
//
// C (M × n, row stride ldc) = A (M × K, row-major, row stride lda: the convolution weights as they are,
// never packed) · B (K × n) (+ bias per row), where B, the im2col matrix, is built directly in panels:
// a column range [c0, c1) (c0 a multiple of 16) is cut into panels of 48 columns (the last one 16 or
// 32 wide, zero-padded past the matrix's last column), and each panel is stored as K rows of its width,
// contiguous (panel q of the range at `b + K·48·q`). A register tile is 8 rows of A (broadcast) × one
// panel (up to 3 zmm column groups, 24 accumulators); K is cut into blocks so that one block of a panel
// stays in L1 while every row block of A passes over it, and a block of A, B and C stays in L2.

public enum PanelGEMM {
    public typealias V16 = SIMD16<Float>
    public typealias P = UnsafeMutablePointer<Float>
    public typealias CP = UnsafePointer<Float>

    /// Columns of a full panel.
    public static let panelColumns = 48

    @_transparent static func ldv(_ p: CP) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
    @_transparent static func ldv(_ p: P) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
    @_transparent static func stv(_ p: P, _ v: V16) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self) }

    /// Floats of B for columns [c0, c1) (c1 − c0 rounded up to 16) and K rows.
    public static func panelFloats(columns: Int, k: Int) -> Int { (columns + 15) / 16 * 16 * k }

    // MARK: - building B

    /// Panel rows of the im2col of a stride-1 "same" convolution whose taps are pure shifts of the
    /// channel: row (ci, t) column j is `mask[t·maskStride + j] ≠ 0 ? x[ci·cs + j + delta[t]] : 0`.
    /// Builds columns [c0, c1) of rows [k0, k1) into the range's panels: panel q at `b + panelStride·q`,
    /// row kr of a panel of width w at `(kr − firstRow)·w` in it (whole B: panelStride K·48, firstRow 0;
    /// one K block: panelStride (k1 − k0)·48, firstRow k0).
    /// `mask` must be zero for columns ≥ the matrix's column count (up to c1 rounded up to 16), and
    /// every read it lets through must lie in the input (`cin·cs` floats at `x`).
    public static func packShifted(input x: CP, channelStride cs: Int, inputFloats: Int, taps: Int,
                                   delta: UnsafePointer<Int>, mask: UnsafePointer<UInt32>, maskStride: Int,
                                   rows k0: Int, _ k1: Int, columns c0: Int, _ c1: Int, into b: P, panelStride: Int, firstRow: Int) {
        guard c1 > c0, k1 > k0 else { return }
        let first = k0.quotientAndRemainder(dividingBy: taps)
        var q = 0, p0 = c0
        while p0 < c1 {
            let w = min(panelColumns, (c1 - p0 + 15) / 16 * 16)
            let panel = b + panelStride * q
            // (ci, t) of row kr, stepped without a division per row.
            var ci = first.quotient, t = first.remainder
            for kr in k0..<k1 {
                defer { t += 1; if t == taps { t = 0; ci += 1 } }
                let src = ci * cs + delta[t]          // input index of column 0
                let m = UnsafeRawPointer(mask + t * maskStride)
                let dst = panel + (kr - firstRow) * w
                var j = 0
                while j < w {
                    let pos = p0 + j
                    let s = src + pos
                    let mv = m.loadUnaligned(fromByteOffset: 4 * pos, as: SIMD16<UInt32>.self)
                    let v: SIMD16<UInt32>
                    if s >= 0 && s + 16 <= inputFloats {
                        v = UnsafeRawPointer(x + s).loadUnaligned(as: SIMD16<UInt32>.self) & mv
                    } else {
                        var u = SIMD16<UInt32>()
                        for l in 0..<16 where mv[l] != 0 { u[l] = UnsafeRawPointer(x + s + l).load(as: UInt32.self) }
                        v = u
                    }
                    UnsafeMutableRawPointer(dst + j).storeBytes(of: v, as: SIMD16<UInt32>.self)
                    j += 16
                }
            }
            p0 += w; q += 1
        }
    }

    /// Panel rows of a general im2col: row (ci, t) column j is `index[t·indexStride + j] ≥ 0 ?
    /// x[ci·cs + index[…]] : 0`; `index` must be −1 for columns ≥ the matrix's column count.
    public static func packGathered(input x: CP, channelStride cs: Int, taps: Int,
                                    index: UnsafePointer<Int32>, indexStride: Int,
                                    rows k0: Int, _ k1: Int, columns c0: Int, _ c1: Int, into b: P, panelStride: Int, firstRow: Int) {
        var q = 0, p0 = c0
        while p0 < c1 {
            let w = min(panelColumns, (c1 - p0 + 15) / 16 * 16)
            let panel = b + panelStride * q
            var ci = k0 / taps, t = k0 % taps
            for kr in k0..<k1 {
                defer { t += 1; if t == taps { t = 0; ci += 1 } }
                let src = x + ci * cs
                let idx = index + t * indexStride + p0
                let dst = panel + (kr - firstRow) * w
                for j in 0..<w { let i = Int(idx[j]); dst[j] = i < 0 ? 0 : src[i] }
            }
            p0 += w; q += 1
        }
    }

    // MARK: - multiplying

    /// Rows [r0, r1) of C = A · B (+ bias) for the columns [c0, c1) of B laid out in panels at `b`
    /// (`nValid` ≤ c1 − c0 of them real: C gets exactly those). `c` points at C's column c0, row 0.
    /// K is taken in blocks of `kBlock` (0: all of K at once).
    public static func multiply(rows r0: Int, _ r1: Int, k kTotal: Int, a: CP, lda: Int, b: CP,
                                columns c0: Int, _ c1: Int, valid nValid: Int, c: P, ldc: Int,
                                bias: CP?, kBlock: Int) {
        guard r1 > r0, c1 > c0 else { return }
        if kTotal == 0 {
            for r in r0..<r1 { (c + r * ldc).update(repeating: bias?[r] ?? 0, count: nValid) }
            return
        }
        let kb = kBlock > 0 ? kBlock : kTotal
        let scratch = P.allocate(capacity: scratchFloats(rows: r1 - r0))
        defer { scratch.deallocate() }
        var k0 = 0
        while k0 < kTotal {
            let klen = min(kb, kTotal - k0)
            multiplyBlock(rows: r0, r1, k: klen, a: a + k0, lda: lda, b: b, panelStride: kTotal * panelColumns, firstRow: k0,
                          columns: c1 - c0, valid: nValid, c: c, ldc: ldc, bias: bias, accumulate: k0 > 0, scratch: scratch,
                          last: k0 + klen == kTotal)
            k0 += klen
        }
    }

    /// Floats of the scratch `multiplyBlock` needs for `rows` rows.
    public static func scratchFloats(rows: Int) -> Int { max(16, rows * panelColumns) }

    /// One K block of `multiply`: C[r0..<r1, 0..<nValid] (+)= A[r0..<r1, block] · B[block, …] where `a` points
    /// at the block's first column of A, panel q of B at `b + panelStride·q` with the block's rows from
    /// row `firstRow` of the panel on (each row as wide as the panel). `width` columns in all (a multiple
    /// of 16); when the last panel holds fewer real columns than its width it is accumulated in `scratch`
    /// (`scratchFloats(rows:)`, kept between the blocks of one product) and copied into C after the `last` block.
    /// The first block (not `accumulate`) starts from the bias (or zero), the others from C.
    /// With `ldb` > 0, B is an ordinary row-major matrix instead (row stride `ldb`, panel q at
    /// `b + 48·q`, so `panelStride` 48): `width` must then be a multiple of 48 (no partial panel).
    public static func multiplyBlock(rows r0: Int, _ r1: Int, k klen: Int, a: CP, lda: Int, b: CP, panelStride: Int,
                                     firstRow: Int, columns width: Int, valid nValid: Int, c: P, ldc: Int,
                                     bias: CP?, accumulate acc: Bool, scratch: P, last: Bool, ldb: Int = 0) {
        guard r1 > r0, width > 0 else { return }
        var q = 0, start = 0
        while start < width {
            let w = min(panelColumns, width - start)
            let rowStride = ldb > 0 ? ldb : w
            let bp = b + panelStride * q + firstRow * rowStride
            let toScratch = nValid - start < w
            let cbase: P, ld: Int
            if toScratch { cbase = scratch - r0 * panelColumns; ld = panelColumns } else { cbase = c + start; ld = ldc }
            let groups = w / 16
            var r = r0
            while r + 8 <= r1 {
                let ap = a + r * lda, cp = cbase + r * ld, bi = acc ? nil : bias.map { $0 + r }
                switch groups {
                case 3: tile8x3(ap, lda, bp, rowStride, klen, cp, ld, bi, acc)
                case 2: tile8x2(ap, lda, bp, rowStride, klen, cp, ld, bi, acc)
                default: tile8x1(ap, lda, bp, rowStride, klen, cp, ld, bi, acc)
                }
                r += 8
            }
            while r < r1 {
                let ap = a + r * lda, cp = cbase + r * ld, bi = acc ? nil : bias.map { $0 + r }
                switch groups {
                case 3: tile1x3(ap, bp, rowStride, klen, cp, bi, acc)
                case 2: tile1x2(ap, bp, rowStride, klen, cp, bi, acc)
                default: tile1x1(ap, bp, rowStride, klen, cp, bi, acc)
                }
                r += 1
            }
            if toScratch && last {
                for r in r0..<r1 { (c + r * ldc + start).update(from: scratch + (r - r0) * panelColumns, count: max(0, nValid - start)) }
            }
            start += w; q += 1
        }
    }

    @_transparent
    static func initial(_ c: P, _ bias: CP?, _ i: Int, _ acc: Bool) -> V16 {
        if acc { return ldv(c) }
        if let bias { return V16(repeating: bias[i]) }
        return V16()
    }

    // The tiles: `b` is a panel block (row stride 16·groups), K its rows; C rows of stride `ldc`.
    // Accumulators start from C (`acc`), else from the bias of their row (or zero).

    @inline(never)
    static func tile8x3(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ bias: CP?, _ acc: Bool) {
        var o = c
        var c00 = initial(o, bias, 0, acc), c01 = initial(o + 16, bias, 0, acc), c02 = initial(o + 32, bias, 0, acc); o += ldc
        var c10 = initial(o, bias, 1, acc), c11 = initial(o + 16, bias, 1, acc), c12 = initial(o + 32, bias, 1, acc); o += ldc
        var c20 = initial(o, bias, 2, acc), c21 = initial(o + 16, bias, 2, acc), c22 = initial(o + 32, bias, 2, acc); o += ldc
        var c30 = initial(o, bias, 3, acc), c31 = initial(o + 16, bias, 3, acc), c32 = initial(o + 32, bias, 3, acc); o += ldc
        var c40 = initial(o, bias, 4, acc), c41 = initial(o + 16, bias, 4, acc), c42 = initial(o + 32, bias, 4, acc); o += ldc
        var c50 = initial(o, bias, 5, acc), c51 = initial(o + 16, bias, 5, acc), c52 = initial(o + 32, bias, 5, acc); o += ldc
        var c60 = initial(o, bias, 6, acc), c61 = initial(o + 16, bias, 6, acc), c62 = initial(o + 32, bias, 6, acc); o += ldc
        var c70 = initial(o, bias, 7, acc), c71 = initial(o + 16, bias, 7, acc), c72 = initial(o + 32, bias, 7, acc)
        var bp = b
        // Row r of A at p + r·lda: p, p + l, p + 2l, p + l3, p + 4l, p + l5, p + 2·l3, p + l7 (base + index·scale).
        var p = a
        let l = lda, l3 = 3 * lda, l5 = 5 * lda, l7 = 7 * lda
        for _ in 0..<K {
            let b0 = ldv(bp), b1 = ldv(bp + 16), b2 = ldv(bp + 32)
            var w = V16(repeating: p[0]); c00.addProduct(w, b0); c01.addProduct(w, b1); c02.addProduct(w, b2)
            w = V16(repeating: p[l]); c10.addProduct(w, b0); c11.addProduct(w, b1); c12.addProduct(w, b2)
            w = V16(repeating: p[2 * l]); c20.addProduct(w, b0); c21.addProduct(w, b1); c22.addProduct(w, b2)
            w = V16(repeating: p[l3]); c30.addProduct(w, b0); c31.addProduct(w, b1); c32.addProduct(w, b2)
            w = V16(repeating: p[4 * l]); c40.addProduct(w, b0); c41.addProduct(w, b1); c42.addProduct(w, b2)
            w = V16(repeating: p[l5]); c50.addProduct(w, b0); c51.addProduct(w, b1); c52.addProduct(w, b2)
            w = V16(repeating: p[2 * l3]); c60.addProduct(w, b0); c61.addProduct(w, b1); c62.addProduct(w, b2)
            w = V16(repeating: p[l7]); c70.addProduct(w, b0); c71.addProduct(w, b1); c72.addProduct(w, b2)
            bp += ldb; p += 1
        }
        o = c
        stv(o, c00); stv(o + 16, c01); stv(o + 32, c02); o += ldc
        stv(o, c10); stv(o + 16, c11); stv(o + 32, c12); o += ldc
        stv(o, c20); stv(o + 16, c21); stv(o + 32, c22); o += ldc
        stv(o, c30); stv(o + 16, c31); stv(o + 32, c32); o += ldc
        stv(o, c40); stv(o + 16, c41); stv(o + 32, c42); o += ldc
        stv(o, c50); stv(o + 16, c51); stv(o + 32, c52); o += ldc
        stv(o, c60); stv(o + 16, c61); stv(o + 32, c62); o += ldc
        stv(o, c70); stv(o + 16, c71); stv(o + 32, c72)
    }

    @inline(never)
    static func tile8x2(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ bias: CP?, _ acc: Bool) {
        var o = c
        var c00 = initial(o, bias, 0, acc), c01 = initial(o + 16, bias, 0, acc); o += ldc
        var c10 = initial(o, bias, 1, acc), c11 = initial(o + 16, bias, 1, acc); o += ldc
        var c20 = initial(o, bias, 2, acc), c21 = initial(o + 16, bias, 2, acc); o += ldc
        var c30 = initial(o, bias, 3, acc), c31 = initial(o + 16, bias, 3, acc); o += ldc
        var c40 = initial(o, bias, 4, acc), c41 = initial(o + 16, bias, 4, acc); o += ldc
        var c50 = initial(o, bias, 5, acc), c51 = initial(o + 16, bias, 5, acc); o += ldc
        var c60 = initial(o, bias, 6, acc), c61 = initial(o + 16, bias, 6, acc); o += ldc
        var c70 = initial(o, bias, 7, acc), c71 = initial(o + 16, bias, 7, acc)
        var bp = b
        let a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda
        for k in 0..<K {
            let b0 = ldv(bp), b1 = ldv(bp + 16)
            var w = V16(repeating: a[k]); c00.addProduct(w, b0); c01.addProduct(w, b1)
            w = V16(repeating: a1[k]); c10.addProduct(w, b0); c11.addProduct(w, b1)
            w = V16(repeating: a2[k]); c20.addProduct(w, b0); c21.addProduct(w, b1)
            w = V16(repeating: a3[k]); c30.addProduct(w, b0); c31.addProduct(w, b1)
            w = V16(repeating: a4[k]); c40.addProduct(w, b0); c41.addProduct(w, b1)
            w = V16(repeating: a5[k]); c50.addProduct(w, b0); c51.addProduct(w, b1)
            w = V16(repeating: a6[k]); c60.addProduct(w, b0); c61.addProduct(w, b1)
            w = V16(repeating: a7[k]); c70.addProduct(w, b0); c71.addProduct(w, b1)
            bp += ldb
        }
        o = c
        stv(o, c00); stv(o + 16, c01); o += ldc
        stv(o, c10); stv(o + 16, c11); o += ldc
        stv(o, c20); stv(o + 16, c21); o += ldc
        stv(o, c30); stv(o + 16, c31); o += ldc
        stv(o, c40); stv(o + 16, c41); o += ldc
        stv(o, c50); stv(o + 16, c51); o += ldc
        stv(o, c60); stv(o + 16, c61); o += ldc
        stv(o, c70); stv(o + 16, c71)
    }

    @inline(never)
    static func tile8x1(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int, _ bias: CP?, _ acc: Bool) {
        var o = c
        var c0 = initial(o, bias, 0, acc); o += ldc
        var c1 = initial(o, bias, 1, acc); o += ldc
        var c2 = initial(o, bias, 2, acc); o += ldc
        var c3 = initial(o, bias, 3, acc); o += ldc
        var c4 = initial(o, bias, 4, acc); o += ldc
        var c5 = initial(o, bias, 5, acc); o += ldc
        var c6 = initial(o, bias, 6, acc); o += ldc
        var c7 = initial(o, bias, 7, acc)
        var bp = b
        let a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda
        for k in 0..<K {
            let b0 = ldv(bp)
            c0.addProduct(V16(repeating: a[k]), b0); c1.addProduct(V16(repeating: a1[k]), b0)
            c2.addProduct(V16(repeating: a2[k]), b0); c3.addProduct(V16(repeating: a3[k]), b0)
            c4.addProduct(V16(repeating: a4[k]), b0); c5.addProduct(V16(repeating: a5[k]), b0)
            c6.addProduct(V16(repeating: a6[k]), b0); c7.addProduct(V16(repeating: a7[k]), b0)
            bp += ldb
        }
        o = c
        stv(o, c0); o += ldc; stv(o, c1); o += ldc; stv(o, c2); o += ldc; stv(o, c3); o += ldc
        stv(o, c4); o += ldc; stv(o, c5); o += ldc; stv(o, c6); o += ldc; stv(o, c7)
    }

    @inline(never)
    static func tile1x3(_ a: CP, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ bias: CP?, _ acc: Bool) {
        var c0 = initial(c, bias, 0, acc), c1 = initial(c + 16, bias, 0, acc), c2 = initial(c + 32, bias, 0, acc)
        var bp = b
        for k in 0..<K {
            let w = V16(repeating: a[k])
            c0.addProduct(w, ldv(bp)); c1.addProduct(w, ldv(bp + 16)); c2.addProduct(w, ldv(bp + 32))
            bp += ldb
        }
        stv(c, c0); stv(c + 16, c1); stv(c + 32, c2)
    }

    @inline(never)
    static func tile1x2(_ a: CP, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ bias: CP?, _ acc: Bool) {
        var c0 = initial(c, bias, 0, acc), c1 = initial(c + 16, bias, 0, acc)
        var bp = b
        for k in 0..<K {
            let w = V16(repeating: a[k])
            c0.addProduct(w, ldv(bp)); c1.addProduct(w, ldv(bp + 16))
            bp += ldb
        }
        stv(c, c0); stv(c + 16, c1)
    }

    @inline(never)
    static func tile1x1(_ a: CP, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ bias: CP?, _ acc: Bool) {
        var c0 = initial(c, bias, 0, acc)
        var bp = b
        for k in 0..<K {
            c0.addProduct(V16(repeating: a[k]), ldv(bp))
            bp += ldb
        }
        stv(c, c0)
    }
}
