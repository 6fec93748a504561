// Session-5 AVX-512 kernels of the Unet3D attention blocks: the per-element passes of the attention
// cores folded into the epilogues of the GEMM-like tiles around them. Same math as the kernels in
// UnetAttentionCore.swift (which stay selectable); only the order of roundings changes.
//
// Temporal attention (one head, 16 positions in the lanes):
//   - the rotary rotation of q and k runs in the epilogue of their projection GEMM (`gemmRotary`);
//   - the 1/√dh scale, the relative-position bias and the row maxima run in the epilogue of the score
//     tiles (`scores6x4Fused`);
//   - one pass over the F × F score tile computes the exponentials and the row sums;
//   - the 1/Σ normalisation runs in the epilogue of the value tiles (`values6x4Fused`).
//   The session-4 head made five more passes over the tile (scale, rotate, bias + max, exp, scale).
// Spatial linear attention: the k softmax leaves its rows unnormalised and returns 1/Σ per row, which
// the caller applies to the (much smaller) context.

public extension UnetAttentionCore {
    /// `exp16` for x ≤ 0 (softmax arguments after the maximum is subtracted): only the lower clamp.
    /// Identical results to `exp16` on that range.
    @_transparent
    static func exp16NonPositive(_ x0: V16) -> V16 {
        let lo = V16(repeating: -87.3)
        var x = x0.replacing(with: lo, where: x0 .< lo)
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

    // MARK: - projection with the rotary rotation in the epilogue

    /// C (M × N, row stride `ldc`, ordinary row-major column groups) = A (M × K) · B (K × N) for N a
    /// multiple of 16, M and `dimHead` multiples of 8, then each row pair (2i, 2i + 1) of every head
    /// (row r is feature r mod dimHead) with i < `pairs` rotated by the angle of frame g in column
    /// group g: (x₀, x₁) ← (x₀ cos − x₁ sin, x₁ cos + x₀ sin), `cos/sin[g·tablePairs + i]`. The q and
    /// k rows of the temporal attention's tile (frame f = column group f) in one call.
    static func gemmRotary(M: Int, N: Int, K: Int, a: CP, lda: Int, b: CP, ldb: Int, c: P, ldc: Int, dimHead dh: Int,
                           cos: CP, sin: CP, tablePairs: Int, pairs: Int) {
        precondition(N % 16 == 0 && M % 8 == 0 && dh % 8 == 0,
                     "UnetAttentionCore.gemmRotary: M \(M), N \(N), dimHead \(dh) (need M, dh multiples of 8, N of 16)")
        let groups = N / 16
        var g = 0
        while g + 3 <= groups {
            var r = 0
            while r < M {
                tile8x3Rotary(a + r * lda, lda, b + 16 * g, ldb, K, c + r * ldc + 16 * g, ldc,
                              cos + g * tablePairs, sin + g * tablePairs, tablePairs, (r % dh) / 2, pairs)
                r += 8
            }
            g += 3
        }
        while g < groups {
            var r = 0
            while r < M {
                tile8x1Rotary(a + r * lda, lda, b + 16 * g, ldb, K, c + r * ldc + 16 * g, ldc,
                              cos + g * tablePairs, sin + g * tablePairs, (r % dh) / 2, pairs)
                r += 8
            }
            g += 1
        }
    }

    /// Rotates (x₀, x₁) by the angle whose cosine and sine are c and s.
    @_transparent
    static func rotate(_ x0: inout V16, _ x1: inout V16, _ c: Float, _ s: Float) {
        let cv = V16(repeating: c), sv = V16(repeating: s)
        let a = x0
        x0 = x0 * cv - x1 * sv
        x1 = x1 * cv + a * sv
    }

    @inline(never)
    static func tile8x3Rotary(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int,
                              _ cs: CP, _ sn: CP, _ tp: Int, _ i0: Int, _ pairs: Int) {
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
        // Pairs i0 ..< i0 + 4 (rows 0/1, 2/3, 4/5, 6/7), frames 0, 1, 2 of the panel.
        if i0 < pairs {
            rotate(&c00, &c10, cs[i0], sn[i0]); rotate(&c01, &c11, cs[tp + i0], sn[tp + i0])
            rotate(&c02, &c12, cs[2 * tp + i0], sn[2 * tp + i0])
        }
        if i0 + 1 < pairs {
            let i = i0 + 1
            rotate(&c20, &c30, cs[i], sn[i]); rotate(&c21, &c31, cs[tp + i], sn[tp + i]); rotate(&c22, &c32, cs[2 * tp + i], sn[2 * tp + i])
        }
        if i0 + 2 < pairs {
            let i = i0 + 2
            rotate(&c40, &c50, cs[i], sn[i]); rotate(&c41, &c51, cs[tp + i], sn[tp + i]); rotate(&c42, &c52, cs[2 * tp + i], sn[2 * tp + i])
        }
        if i0 + 3 < pairs {
            let i = i0 + 3
            rotate(&c60, &c70, cs[i], sn[i]); rotate(&c61, &c71, cs[tp + i], sn[tp + i]); rotate(&c62, &c72, cs[2 * tp + i], sn[2 * tp + i])
        }
        var o = c
        st(o, c00); st(o + 16, c01); st(o + 32, c02); o += ldc
        st(o, c10); st(o + 16, c11); st(o + 32, c12); o += ldc
        st(o, c20); st(o + 16, c21); st(o + 32, c22); o += ldc
        st(o, c30); st(o + 16, c31); st(o + 32, c32); o += ldc
        st(o, c40); st(o + 16, c41); st(o + 32, c42); o += ldc
        st(o, c50); st(o + 16, c51); st(o + 32, c52); o += ldc
        st(o, c60); st(o + 16, c61); st(o + 32, c62); o += ldc
        st(o, c70); st(o + 16, c71); st(o + 32, c72)
    }

    @inline(never)
    static func tile8x1Rotary(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int,
                              _ cs: CP, _ sn: CP, _ i0: Int, _ pairs: Int) {
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
        if i0 < pairs { rotate(&c0, &c1, cs[i0], sn[i0]) }
        if i0 + 1 < pairs { rotate(&c2, &c3, cs[i0 + 1], sn[i0 + 1]) }
        if i0 + 2 < pairs { rotate(&c4, &c5, cs[i0 + 2], sn[i0 + 2]) }
        if i0 + 3 < pairs { rotate(&c6, &c7, cs[i0 + 3], sn[i0 + 3]) }
        st(c, c0); st(c + ldc, c1); st(c + 2 * ldc, c2); st(c + 3 * ldc, c3)
        let c4p = c + 4 * ldc
        st(c4p, c4); st(c4p + ldc, c5); st(c4p + 2 * ldc, c6); st(c4p + 3 * ldc, c7)
    }

    // MARK: - temporal attention head, passes fused

    /// Floats of `stats` scratch for `temporalHeadFused`.
    static func fusedHeadStats(frames F: Int) -> Int { F * 16 + F * F }

    /// `temporalHead` with q and k already rotated (`gemmRotary`): out[e·T + 16i + l] =
    /// Σ_j softmax_j(scale · q_i · k_j + bias[i·F + j]) v[e][j]. q and k are not modified. `s` holds
    /// F·F·16 floats, `stats` `fusedHeadStats(frames:)` floats.
    static func temporalHeadFused(q: CP, k: CP, v: CP, frames F: Int, dimHead dh: Int, valueRows dv: Int, out o: P,
                                  scale: Float, bias: CP?, s: P, stats: P) {
        let L = 16, T = F * L
        let mx = stats
        let bias = bias ?? {
            let z = stats + F * L
            z.update(repeating: 0, count: F * F)
            return UnsafePointer(z)
        }()
        for i in 0..<F { st(mx + i * L, V16(repeating: -.infinity)) }
        // Scores, scaled, plus the bias; running row maxima.
        @inline(__always) func score(_ i: Int, _ j: Int) {
            var a = V16()
            var qp = q + i * L, kp = k + j * L
            for _ in 0..<dh { a.addProduct(ld(qp), ld(kp)); qp += T; kp += T }
            a = V16(repeating: bias[i * F + j]).addingProduct(a, V16(repeating: scale))
            st(s + (i * F + j) * L, a)
            let m = ld(mx + i * L)
            st(mx + i * L, m.replacing(with: a, where: a .> m))
        }
        var i0 = 0
        while i0 + 6 <= F {
            var j0 = 0
            while j0 + 4 <= F { scores6x4Fused(q, k, T, dh, F, i0, j0, s, scale, bias, mx); j0 += 4 }
            while j0 < F { for i in i0..<i0 + 6 { score(i, j0) }; j0 += 1 }
            i0 += 6
        }
        for i in i0..<F { for j in 0..<F { score(i, j) } }
        // Exponentials and row sums; stats row i becomes 1/Σ_j.
        for i in 0..<F {
            let row = s + i * F * L, m = ld(mx + i * L)
            var sum = V16()
            for j in 0..<F {
                let e = exp16NonPositive(ld(row + j * L) - m)
                st(row + j * L, e)
                sum += e
            }
            st(mx + i * L, 1 / sum)
        }
        // o[e][i] = (Σ_j e[i][j] v[e][j]) / Σ_j e[i][j].
        @inline(__always) func value(_ i: Int, _ e: Int) {
            var a = V16()
            var pp = s + i * F * L, vp = v + e * T
            for _ in 0..<F { a.addProduct(ld(pp), ld(vp)); pp += L; vp += L }
            st(o + e * T + i * L, a * ld(mx + i * L))
        }
        i0 = 0
        while i0 + 6 <= F {
            var e0 = 0
            while e0 + 4 <= dv { values6x4Fused(s, v, T, F, i0, e0, o, mx); e0 += 4 }
            while e0 < dv { for i in i0..<i0 + 6 { value(i, e0) }; e0 += 1 }
            i0 += 6
        }
        for i in i0..<F { for e in 0..<dv { value(i, e) } }
    }

    /// `scores6x4` with the epilogue s = scale · (q · k) + bias, and the row maxima `mx` updated.
    @inline(never)
    static func scores6x4Fused(_ q: CP, _ k: CP, _ T: Int, _ dh: Int, _ F: Int, _ i0: Int, _ j0: Int, _ s: P,
                               _ scale: Float, _ bias: CP, _ mx: P) {
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
        let sc = V16(repeating: scale)
        scoreRow(s, bias, mx, F, i0, j0, sc, a00, a01, a02, a03); scoreRow(s, bias, mx, F, i0 + 1, j0, sc, a10, a11, a12, a13)
        scoreRow(s, bias, mx, F, i0 + 2, j0, sc, a20, a21, a22, a23); scoreRow(s, bias, mx, F, i0 + 3, j0, sc, a30, a31, a32, a33)
        scoreRow(s, bias, mx, F, i0 + 4, j0, sc, a40, a41, a42, a43); scoreRow(s, bias, mx, F, i0 + 5, j0, sc, a50, a51, a52, a53)
    }

    /// Epilogue of one row i of a score block: s = scale · x + bias, stored; the row maximum updated.
    @_transparent
    internal static func scoreRow(_ s: P, _ bias: CP, _ mx: P, _ F: Int, _ i: Int, _ j0: Int, _ sc: V16,
                         _ x0: V16, _ x1: V16, _ x2: V16, _ x3: V16) {
        let bp = bias + i * F + j0, o = s + (i * F + j0) * 16
        let y0 = V16(repeating: bp[0]).addingProduct(x0, sc), y1 = V16(repeating: bp[1]).addingProduct(x1, sc)
        let y2 = V16(repeating: bp[2]).addingProduct(x2, sc), y3 = V16(repeating: bp[3]).addingProduct(x3, sc)
        st(o, y0); st(o + 16, y1); st(o + 32, y2); st(o + 48, y3)
        var m = UnsafeRawPointer(mx + i * 16).loadUnaligned(as: V16.self)
        m.replace(with: y0, where: y0 .> m); m.replace(with: y1, where: y1 .> m)
        m.replace(with: y2, where: y2 .> m); m.replace(with: y3, where: y3 .> m)
        st(mx + i * 16, m)
    }

    /// `values6x4` with the epilogue o[e][i] ×= inv[i] (the softmax's 1/Σ of row i).
    @inline(never)
    static func values6x4Fused(_ p: CP, _ v: CP, _ T: Int, _ F: Int, _ i0: Int, _ e0: Int, _ o: P, _ inv: CP) {
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
        valueRow(o, inv, T, i0, e0, a00, a01, a02, a03); valueRow(o, inv, T, i0 + 1, e0, a10, a11, a12, a13)
        valueRow(o, inv, T, i0 + 2, e0, a20, a21, a22, a23); valueRow(o, inv, T, i0 + 3, e0, a30, a31, a32, a33)
        valueRow(o, inv, T, i0 + 4, e0, a40, a41, a42, a43); valueRow(o, inv, T, i0 + 5, e0, a50, a51, a52, a53)
    }

    /// Epilogue of one row i of a value block: o[e0 + u][i] = x_u · inv[i].
    @_transparent
    internal static func valueRow(_ o: P, _ inv: CP, _ T: Int, _ i: Int, _ e0: Int, _ x0: V16, _ x1: V16, _ x2: V16, _ x3: V16) {
        let f = UnsafeRawPointer(inv + i * 16).loadUnaligned(as: V16.self), b = o + e0 * T + i * 16
        st(b, x0 * f); st(b + T, x1 * f); st(b + 2 * T, x2 * f); st(b + 3 * T, x3 * f)
    }

    // MARK: - spatial linear attention softmaxes, k left unnormalised

    /// `linearSoftmaxes` except that the k rows are left as exp(k − max) and `kInverse[d]` receives
    /// 1/Σ of row d: the caller scales the context rows (ctx[d][·] = kInverse[d] · Σ_n e[d][n] …),
    /// which are dh × C or dh × dh instead of dh × positions.
    static func linearSoftmaxesDeferredK(q: P, k: P, positions n: Int, dimHead dh: Int, scale: Float, kInverse: P) {
        let full = n / 16 * 16, rest = n - full
        var i = 0
        while i < full {
            var mx = ld(q + i)
            for d in 1..<dh { let x = ld(q + d * n + i); mx.replace(with: x, where: x .> mx) }
            var sum = V16()
            for d in 0..<dh {
                let e = exp16NonPositive(ld(q + d * n + i) - mx)
                st(q + d * n + i, e)
                sum += e
            }
            let f = scale / sum
            for d in 0..<dh { st(q + d * n + i, ld(q + d * n + i) * f) }
            i += 16
        }
        if rest > 0 {
            var mx = ldPartial(q + full, rest, fill: 0)
            for d in 1..<dh { let x = ldPartial(q + d * n + full, rest, fill: 0); mx.replace(with: x, where: x .> mx) }
            var sum = V16()
            for d in 0..<dh {
                let e = exp16NonPositive(ldPartial(q + d * n + full, rest, fill: 0) - mx)
                stPartial(q + d * n + full, e, rest)
                sum += e
            }
            let f = scale / sum
            for d in 0..<dh { stPartial(q + d * n + full, ldPartial(q + d * n + full, rest, fill: 0) * f, rest) }
        }
        for d in 0..<dh {
            let r = k + d * n
            var mx = V16(repeating: -.infinity)
            var j = 0
            while j < full { let x = ld(r + j); mx.replace(with: x, where: x .> mx); j += 16 }
            if rest > 0 { let x = ldPartial(r + full, rest, fill: -.infinity); mx.replace(with: x, where: x .> mx) }
            let m = V16(repeating: hmax(mx))
            var acc = V16()
            j = 0
            while j < full {
                let e = exp16NonPositive(ld(r + j) - m)
                st(r + j, e)
                acc += e
                j += 16
            }
            if rest > 0 {
                var e = exp16NonPositive(ldPartial(r + full, rest, fill: 0) - m)
                for l in rest..<16 { e[l] = 0 }
                stPartial(r + full, e, rest)
                acc += e
            }
            kInverse[d] = 1 / hsum(acc)
        }
    }
}

// MARK: - spatial linear attention with k transposed (positions × features)

public extension UnetAttentionCore {
    /// C (M × N, row stride `ldc`) = Aᵀ · B for A stored K × M (row stride `lda`: element (i, k) of the
    /// product's left factor is `a[k·lda + i]`) and B K × N (row stride `ldb`), N a multiple of 16.
    /// The spatial attention's kᵀ = xnᵀ · Wkᵀ straight from the channel-major xn, without a transpose.
    static func gemmTN(M: Int, N: Int, K: Int, a: CP, lda: Int, b: CP, ldb: Int, c: P, ldc: Int) {
        precondition(N % 16 == 0, "UnetAttentionCore.gemmTN: N = \(N) is not a multiple of 16")
        let groups = N / 16
        var g = 0
        while g < groups {
            let width = groups - g >= 3 ? 3 : groups - g
            var r = 0
            while r + 8 <= M {
                switch width {
                case 3: tile8x3TN(a + r, lda, b + 16 * g, ldb, K, c + r * ldc + 16 * g, ldc)
                case 2: tile8x2TN(a + r, lda, b + 16 * g, ldb, K, c + r * ldc + 16 * g, ldc)
                default: tile8x1TN(a + r, lda, b + 16 * g, ldb, K, c + r * ldc + 16 * g, ldc)
                }
                r += 8
            }
            while r < M {
                for u in 0..<width {
                    var acc = V16()
                    var bp = b + 16 * (g + u)
                    for k in 0..<K { acc.addProduct(V16(repeating: a[k * lda + r]), ld(bp)); bp += ldb }
                    st(c + r * ldc + 16 * (g + u), acc)
                }
                r += 1
            }
            g += width
        }
    }

    @inline(never)
    static func tile8x3TN(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int) {
        var c00 = V16(), c01 = V16(), c02 = V16(), c10 = V16(), c11 = V16(), c12 = V16()
        var c20 = V16(), c21 = V16(), c22 = V16(), c30 = V16(), c31 = V16(), c32 = V16()
        var c40 = V16(), c41 = V16(), c42 = V16(), c50 = V16(), c51 = V16(), c52 = V16()
        var c60 = V16(), c61 = V16(), c62 = V16(), c70 = V16(), c71 = V16(), c72 = V16()
        var bp = b, ap = a
        for _ in 0..<K {
            let b0 = ld(bp), b1 = ld(bp + 16), b2 = ld(bp + 32)
            var w = V16(repeating: ap[0]); c00.addProduct(w, b0); c01.addProduct(w, b1); c02.addProduct(w, b2)
            w = V16(repeating: ap[1]); c10.addProduct(w, b0); c11.addProduct(w, b1); c12.addProduct(w, b2)
            w = V16(repeating: ap[2]); c20.addProduct(w, b0); c21.addProduct(w, b1); c22.addProduct(w, b2)
            w = V16(repeating: ap[3]); c30.addProduct(w, b0); c31.addProduct(w, b1); c32.addProduct(w, b2)
            w = V16(repeating: ap[4]); c40.addProduct(w, b0); c41.addProduct(w, b1); c42.addProduct(w, b2)
            w = V16(repeating: ap[5]); c50.addProduct(w, b0); c51.addProduct(w, b1); c52.addProduct(w, b2)
            w = V16(repeating: ap[6]); c60.addProduct(w, b0); c61.addProduct(w, b1); c62.addProduct(w, b2)
            w = V16(repeating: ap[7]); c70.addProduct(w, b0); c71.addProduct(w, b1); c72.addProduct(w, b2)
            bp += ldb; ap += lda
        }
        var o = c
        st(o, c00); st(o + 16, c01); st(o + 32, c02); o += ldc
        st(o, c10); st(o + 16, c11); st(o + 32, c12); o += ldc
        st(o, c20); st(o + 16, c21); st(o + 32, c22); o += ldc
        st(o, c30); st(o + 16, c31); st(o + 32, c32); o += ldc
        st(o, c40); st(o + 16, c41); st(o + 32, c42); o += ldc
        st(o, c50); st(o + 16, c51); st(o + 32, c52); o += ldc
        st(o, c60); st(o + 16, c61); st(o + 32, c62); o += ldc
        st(o, c70); st(o + 16, c71); st(o + 32, c72)
    }

    @inline(never)
    static func tile8x2TN(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int) {
        var c00 = V16(), c01 = V16(), c10 = V16(), c11 = V16(), c20 = V16(), c21 = V16(), c30 = V16(), c31 = V16()
        var c40 = V16(), c41 = V16(), c50 = V16(), c51 = V16(), c60 = V16(), c61 = V16(), c70 = V16(), c71 = V16()
        var bp = b, ap = a
        for _ in 0..<K {
            let b0 = ld(bp), b1 = ld(bp + 16)
            var w = V16(repeating: ap[0]); c00.addProduct(w, b0); c01.addProduct(w, b1)
            w = V16(repeating: ap[1]); c10.addProduct(w, b0); c11.addProduct(w, b1)
            w = V16(repeating: ap[2]); c20.addProduct(w, b0); c21.addProduct(w, b1)
            w = V16(repeating: ap[3]); c30.addProduct(w, b0); c31.addProduct(w, b1)
            w = V16(repeating: ap[4]); c40.addProduct(w, b0); c41.addProduct(w, b1)
            w = V16(repeating: ap[5]); c50.addProduct(w, b0); c51.addProduct(w, b1)
            w = V16(repeating: ap[6]); c60.addProduct(w, b0); c61.addProduct(w, b1)
            w = V16(repeating: ap[7]); c70.addProduct(w, b0); c71.addProduct(w, b1)
            bp += ldb; ap += lda
        }
        var o = c
        st(o, c00); st(o + 16, c01); o += ldc
        st(o, c10); st(o + 16, c11); o += ldc
        st(o, c20); st(o + 16, c21); o += ldc
        st(o, c30); st(o + 16, c31); o += ldc
        st(o, c40); st(o + 16, c41); o += ldc
        st(o, c50); st(o + 16, c51); o += ldc
        st(o, c60); st(o + 16, c61); o += ldc
        st(o, c70); st(o + 16, c71)
    }

    @inline(never)
    static func tile8x1TN(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int) {
        var c0 = V16(), c1 = V16(), c2 = V16(), c3 = V16(), c4 = V16(), c5 = V16(), c6 = V16(), c7 = V16()
        var bp = b, ap = a
        for _ in 0..<K {
            let b0 = ld(bp)
            c0.addProduct(V16(repeating: ap[0]), b0); c1.addProduct(V16(repeating: ap[1]), b0)
            c2.addProduct(V16(repeating: ap[2]), b0); c3.addProduct(V16(repeating: ap[3]), b0)
            c4.addProduct(V16(repeating: ap[4]), b0); c5.addProduct(V16(repeating: ap[5]), b0)
            c6.addProduct(V16(repeating: ap[6]), b0); c7.addProduct(V16(repeating: ap[7]), b0)
            bp += ldb; ap += lda
        }
        st(c, c0); st(c + ldc, c1); st(c + 2 * ldc, c2); st(c + 3 * ldc, c3)
        let c4p = c + 4 * ldc
        st(c4p, c4); st(c4p + ldc, c5); st(c4p + 2 * ldc, c6); st(c4p + 3 * ldc, c7)
    }

    /// C (M × 32, row stride `ldc`) = A (M × K, row stride `lda`) · B (K × 32, row stride `ldb`), in
    /// 8 × 2 register tiles (16 accumulators; `gemm` would run its 8 × 1 tiles twice, 9 loads per 8
    /// FMAs): the per-head context products of the spatial attention, N = dh = 32. Overwrites C.
    static func gemm32(M: Int, K: Int, a: CP, lda: Int, b: CP, ldb: Int, c: P, ldc: Int) {
        var r = 0
        while r + 8 <= M { tile8x2(a + r * lda, lda, b, ldb, K, c + r * ldc, ldc); r += 8 }
        while r < M {
            var c0 = V16(), c1 = V16()
            var bp = b
            for k in 0..<K {
                let w = V16(repeating: a[r * lda + k])
                c0.addProduct(w, ld(bp)); c1.addProduct(w, ld(bp + 16)); bp += ldb
            }
            st(c + r * ldc, c0); st(c + r * ldc + 16, c1)
            r += 1
        }
    }

    @inline(never)
    static func tile8x2(_ a: CP, _ lda: Int, _ b: CP, _ ldb: Int, _ K: Int, _ c: P, _ ldc: Int) {
        var c00 = V16(), c01 = V16(), c10 = V16(), c11 = V16(), c20 = V16(), c21 = V16(), c30 = V16(), c31 = V16()
        var c40 = V16(), c41 = V16(), c50 = V16(), c51 = V16(), c60 = V16(), c61 = V16(), c70 = V16(), c71 = V16()
        var bp = b
        let a4 = a + 4 * lda
        for k in 0..<K {
            let b0 = ld(bp), b1 = ld(bp + 16)
            var w = V16(repeating: a[k]); c00.addProduct(w, b0); c01.addProduct(w, b1)
            w = V16(repeating: a[lda + k]); c10.addProduct(w, b0); c11.addProduct(w, b1)
            w = V16(repeating: a[2 * lda + k]); c20.addProduct(w, b0); c21.addProduct(w, b1)
            w = V16(repeating: a[3 * lda + k]); c30.addProduct(w, b0); c31.addProduct(w, b1)
            w = V16(repeating: a4[k]); c40.addProduct(w, b0); c41.addProduct(w, b1)
            w = V16(repeating: a4[lda + k]); c50.addProduct(w, b0); c51.addProduct(w, b1)
            w = V16(repeating: a4[2 * lda + k]); c60.addProduct(w, b0); c61.addProduct(w, b1)
            w = V16(repeating: a4[3 * lda + k]); c70.addProduct(w, b0); c71.addProduct(w, b1)
            bp += ldb
        }
        var o = c
        st(o, c00); st(o + 16, c01); o += ldc
        st(o, c10); st(o + 16, c11); o += ldc
        st(o, c20); st(o + 16, c21); o += ldc
        st(o, c30); st(o + 16, c31); o += ldc
        st(o, c40); st(o + 16, c41); o += ldc
        st(o, c50); st(o + 16, c51); o += ldc
        st(o, c60); st(o + 16, c61); o += ldc
        st(o, c70); st(o + 16, c71)
    }

    /// The k softmax over positions on kᵀ (rows = `n` positions, row stride `stride`, `groups` groups of
    /// 16 feature columns): each column becomes exp(x − max) and `inverse[column]` 1/Σ (deferred
    /// normalisation, as `linearSoftmaxesDeferredK`), 16 features per vector: no horizontal reductions.
    static func columnSoftmaxDeferred(k: P, rows n: Int, stride: Int, groups: Int, inverse: P) {
        for g in 0..<groups {
            let c = k + 16 * g
            var mx = ld(c)
            var p = c + stride
            for _ in 1..<max(n, 1) { let x = ld(p); mx.replace(with: x, where: x .> mx); p += stride }
            var sum = V16()
            p = c
            for _ in 0..<n {
                let e = exp16NonPositive(ld(p) - mx)
                st(p, e)
                sum += e
                p += stride
            }
            st(inverse + 16 * g, 1 / sum)
        }
    }
}
