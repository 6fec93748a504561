import XCTest
import Kernels
import KernelsAVX512

/// The AVX-512 attention micro-kernels (`KernelsAVX512.UnetAttentionCore`) under every setting of
/// `UnetAttentionCore.variant` (0 = the session-3 kernels, 3 = all session-4 changes), against plain
/// float64 loops on small odd shapes: rows not a multiple of the register tile, column-group counts
/// not a multiple of the panel, several K, scattered column groups, accumulate and overwrite.
final class UnetAttentionCoreTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(KernelContext.useAVX512, "no AVX-512F on this machine (or TUMORSTREAM_NO_AVX512 set)")
    }

    static let variants = [0, UnetAttentionCore.gemmPanelTiles, UnetAttentionCore.inlineSums,
                           UnetAttentionCore.gemmPanelTiles | UnetAttentionCore.inlineSums]

    func withVariant(_ v: Int, _ body: () -> Void) {
        let saved = UnetAttentionCore.variant
        UnetAttentionCore.variant = v
        defer { UnetAttentionCore.variant = saved }
        body()
    }

    func randomArray(_ n: Int, seed: UInt64) -> [Float] {
        var r = SeededRandom(seed: seed)
        return (0..<n).map { _ in r.uniform() }
    }

    func testGemmMatchesPlainLoopOnOddShapes() {
        for M in [1, 3, 4, 5, 8, 11, 13, 24, 29] {
            for groups in [1, 2, 3, 4, 5, 7] {
                for K in [1, 3, 24, 37] {
                    for scattered in [false, true] {
                        checkGemm(M: M, groups: groups, K: K, scattered: scattered)
                    }
                }
            }
        }
    }

    /// C (+)= A·B through `gemm` with lda > K, ldb > N and (scattered) a group stride that is not 16;
    /// every float of C outside the M × N result must keep its sentinel.
    func checkGemm(M: Int, groups: Int, K: Int, scattered: Bool) {
        let N = 16 * groups, lda = K + 2, ldb = N + 16
        let gs = scattered ? 21 : 16
        let ldc = scattered ? groups * gs + 5 : N + 3
        let a = randomArray(M * lda, seed: UInt64(M * 1000 + K)), b = randomArray(K * ldb, seed: UInt64(groups * 7 + K))
        let start = randomArray(M * ldc, seed: 99)
        var expected = [Double](repeating: 0, count: M * N)
        for r in 0..<M {
            for j in 0..<N {
                var s = 0.0
                for k in 0..<K { s += Double(a[r * lda + k]) * Double(b[k * ldb + j]) }
                expected[r * N + j] = s
            }
        }
        for v in Self.variants {
            for accumulate in [false, true] {
                var c = start
                withVariant(v) {
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                UnetAttentionCore.gemm(M: M, N: N, K: K, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                                       c: cp.baseAddress!, ldc: ldc, groupStride: gs, accumulate: accumulate)
                            }
                        }
                    }
                }
                var written = [Bool](repeating: false, count: c.count)
                var worst = 0.0
                for r in 0..<M {
                    for j in 0..<N {
                        let at = r * ldc + (j / 16) * gs + j % 16
                        written[at] = true
                        let e = expected[r * N + j] + (accumulate ? Double(start[at]) : 0)
                        worst = max(worst, abs(Double(c[at]) - e) / (1 + abs(e)))
                    }
                }
                XCTAssertLessThan(worst, 1e-5, "gemm M \(M) N \(N) K \(K) gs \(gs) accumulate \(accumulate) variant \(v)")
                let clobbered = (0..<c.count).filter { !written[$0] && c[$0] != start[$0] }.count
                XCTAssertEqual(clobbered, 0, "gemm wrote outside C: M \(M) N \(N) K \(K) gs \(gs) variant \(v)")
            }
        }
    }

    func testGemmNTMatchesPlainLoop() {
        for (M, N, K) in [(4, 4, 16), (5, 6, 48), (9, 3, 32), (32, 24, 576), (7, 13, 80)] {
            let lda = K + 16, ldb = K + 32, ldc = N + 1
            let a = randomArray(M * lda, seed: UInt64(M + K)), b = randomArray(N * ldb, seed: UInt64(N * 3 + K))
            for v in Self.variants {
                var c = [Float](repeating: .nan, count: M * ldc)
                withVariant(v) {
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                UnetAttentionCore.gemmNT(M: M, N: N, K: K, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                                         c: cp.baseAddress!, ldc: ldc)
                            }
                        }
                    }
                }
                var worst = 0.0
                for i in 0..<M {
                    for j in 0..<N {
                        var s = 0.0
                        for k in 0..<K { s += Double(a[i * lda + k]) * Double(b[j * ldb + k]) }
                        worst = max(worst, abs(Double(c[i * ldc + j]) - s) / (1 + abs(s)))
                    }
                    XCTAssertTrue(c[i * ldc + N].isNaN, "gemmNT wrote past row \(i): M \(M) N \(N) K \(K) variant \(v)")
                }
                XCTAssertLessThan(worst, 1e-5, "gemmNT M \(M) N \(N) K \(K) variant \(v)")
            }
        }
    }

    func testLinearSoftmaxesMatchPlainSoftmax() {
        for (n, dh) in [(576, 32), (37, 5), (16, 3), (50, 32)] {
            let q0 = randomArray(dh * n, seed: UInt64(n + dh)).map { $0 * 6 }
            let k0 = randomArray(dh * n, seed: UInt64(n * 5 + dh)).map { $0 * 6 }
            let scale: Float = 0.3
            var eq = [Double](repeating: 0, count: dh * n), ek = [Double](repeating: 0, count: dh * n)
            for i in 0..<n {
                let m = (0..<dh).map { Double(q0[$0 * n + i]) }.max()!
                let s = (0..<dh).reduce(0.0) { $0 + exp(Double(q0[$1 * n + i]) - m) }
                for d in 0..<dh { eq[d * n + i] = exp(Double(q0[d * n + i]) - m) / s * Double(scale) }
            }
            for d in 0..<dh {
                let m = (0..<n).map { Double(k0[d * n + $0]) }.max()!
                let s = (0..<n).reduce(0.0) { $0 + exp(Double(k0[d * n + $1]) - m) }
                for i in 0..<n { ek[d * n + i] = exp(Double(k0[d * n + i]) - m) / s }
            }
            for v in Self.variants {
                var q = q0, k = k0
                withVariant(v) {
                    q.withUnsafeMutableBufferPointer { qp in
                        k.withUnsafeMutableBufferPointer { kp in
                            UnetAttentionCore.linearSoftmaxes(q: qp.baseAddress!, k: kp.baseAddress!, positions: n, dimHead: dh, scale: scale)
                        }
                    }
                }
                let wq = zip(q, eq).map { abs(Double($0) - $1) / max(abs($1), 1e-6) }.max()!
                let wk = zip(k, ek).map { abs(Double($0) - $1) / max(abs($1), 1e-6) }.max()!
                XCTAssertLessThan(wq, 2e-5, "q softmax n \(n) dh \(dh) variant \(v)")
                XCTAssertLessThan(wk, 2e-5, "k softmax n \(n) dh \(dh) variant \(v)")
            }
        }
    }

    /// The new kernels give the same results as the session-3 kernels up to summation order, on the
    /// level-0 shapes (QKV: 512 × 576 × 24; output projection: 24 × 576 × 256 scattered into frames).
    func testGemmVariantsAgreeAtLevel0Shapes() {
        for (M, N, K, gs, ldc) in [(512, 576, 24, 16, 576), (24, 384, 192, 576, 13_824)] {
            let a = randomArray(M * K, seed: 5), b = randomArray(K * N, seed: 6)
            let rows = (M - 1) * ldc + (N / 16 - 1) * gs + 16
            var outputs: [[Float]] = []
            for v in [0, UnetAttentionCore.gemmPanelTiles] {
                var c = [Float](repeating: 1, count: rows)
                withVariant(v) {
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                UnetAttentionCore.gemm(M: M, N: N, K: K, a: ap.baseAddress!, lda: K, b: bp.baseAddress!, ldb: N,
                                                       c: cp.baseAddress!, ldc: ldc, groupStride: gs, accumulate: true)
                            }
                        }
                    }
                }
                outputs.append(c)
            }
            let worst = zip(outputs[0], outputs[1]).map { abs($0 - $1) / (1 + abs($0)) }.max()!
            XCTAssertLessThan(worst, 1e-5, "gemm \(M)×\(N)×\(K): panel tiles vs 4 × 4 tiles")
        }
    }

    // MARK: - session 5: fused passes

    /// `gemmRotary` = A·B followed by the rotary rotation of each head's row pairs (i < pairs) by the
    /// angle of the column group's frame, against float64, with leftover groups after the 3-group panels.
    func testGemmRotaryMatchesGemmThenRotation() {
        for (M, dh, pairs) in [(8, 8, 4), (64, 32, 16), (64, 32, 5), (48, 16, 8), (16, 8, 0)] {
            for groups in [1, 2, 3, 4, 7] {
                for K in [3, 24] {
                    let N = 16 * groups, lda = K + 1, ldb = N + 16, ldc = N + 32, tp = max(pairs, 1) + 1
                    let a = randomArray(M * lda, seed: UInt64(M + K)), b = randomArray(K * ldb, seed: UInt64(groups + 3 * K))
                    let angles = randomArray(groups * tp, seed: 17).map { Double($0) * 3 }
                    let cs = angles.map { Float(cos($0)) }, sn = angles.map { Float(sin($0)) }
                    var c = [Float](repeating: .nan, count: M * ldc)
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                        cs.withUnsafeBufferPointer { csp in sn.withUnsafeBufferPointer { snp in
                            UnetAttentionCore.gemmRotary(M: M, N: N, K: K, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                                         c: cp.baseAddress!, ldc: ldc, dimHead: dh, cos: csp.baseAddress!,
                                                         sin: snp.baseAddress!, tablePairs: tp, pairs: pairs)
                        } }
                    } } }
                    var worst = 0.0
                    for r in stride(from: 0, to: M, by: 2) {
                        let i = (r % dh) / 2
                        for j in 0..<N {
                            var x0 = 0.0, x1 = 0.0
                            for k in 0..<K {
                                x0 += Double(a[r * lda + k]) * Double(b[k * ldb + j])
                                x1 += Double(a[(r + 1) * lda + k]) * Double(b[k * ldb + j])
                            }
                            if i < pairs {
                                let t = (j / 16) * tp + i, cv = Double(cs[t]), sv = Double(sn[t])
                                (x0, x1) = (x0 * cv - x1 * sv, x1 * cv + x0 * sv)
                            }
                            worst = max(worst, abs(Double(c[r * ldc + j]) - x0) / (1 + abs(x0)))
                            worst = max(worst, abs(Double(c[(r + 1) * ldc + j]) - x1) / (1 + abs(x1)))
                        }
                        XCTAssertTrue(c[r * ldc + N].isNaN && c[(r + 1) * ldc + N].isNaN, "gemmRotary wrote past row \(r)")
                    }
                    XCTAssertLessThan(worst, 1e-5, "gemmRotary M \(M) N \(N) K \(K) dh \(dh) pairs \(pairs)")
                }
            }
        }
    }

    /// `temporalHeadFused` on already-rotated q, k against float64 softmax(scale·q·k + bias)·v, frame
    /// counts inside and outside the 6 × 4 blocks, with and without bias; q and k stay unchanged.
    func testTemporalHeadFusedMatchesFloat64() {
        for (F, dh, dv, withBias) in [(24, 32, 24, true), (24, 32, 32, false), (7, 8, 5, true), (13, 16, 9, true), (5, 4, 3, false)] {
            let T = 16 * F
            let q = randomArray(dh * T, seed: UInt64(F * 3 + dh)).map { $0 * 3 }, k = randomArray(dh * T, seed: UInt64(F + dh)).map { $0 * 3 }
            let v = randomArray(dv * T, seed: UInt64(F * 7)), bias = randomArray(F * F, seed: 5).map { $0 * 2 }
            let scale = 1 / Float(dh).squareRoot()
            var o = [Float](repeating: .nan, count: dv * T), s = [Float](repeating: 0, count: F * F * 16)
            var stats = [Float](repeating: 0, count: UnetAttentionCore.fusedHeadStats(frames: F))
            let (q0, k0) = (q, k)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                bias.withUnsafeBufferPointer { bp in o.withUnsafeMutableBufferPointer { op in s.withUnsafeMutableBufferPointer { sp in
                    stats.withUnsafeMutableBufferPointer { stp in
                        UnetAttentionCore.temporalHeadFused(q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!, frames: F, dimHead: dh,
                                                            valueRows: dv, out: op.baseAddress!, scale: scale,
                                                            bias: withBias ? bp.baseAddress! : nil, s: sp.baseAddress!, stats: stp.baseAddress!)
                    }
                } } }
            } } }
            var worst = 0.0
            for l in 0..<16 {
                for i in 0..<F {
                    var logits = [Double](repeating: 0, count: F)
                    for j in 0..<F {
                        var d = 0.0
                        for e in 0..<dh { d += Double(q[e * T + i * 16 + l]) * Double(k[e * T + j * 16 + l]) }
                        logits[j] = d * Double(scale) + (withBias ? Double(bias[i * F + j]) : 0)
                    }
                    let m = logits.max()!
                    let p = logits.map { exp($0 - m) }, sum = p.reduce(0, +)
                    for e in 0..<dv {
                        var acc = 0.0
                        for j in 0..<F { acc += p[j] / sum * Double(v[e * T + j * 16 + l]) }
                        worst = max(worst, abs(Double(o[e * T + i * 16 + l]) - acc))
                    }
                }
            }
            XCTAssertLessThan(worst, 2e-6, "temporalHeadFused F \(F) dh \(dh) dv \(dv) bias \(withBias)")
            XCTAssertEqual(q, q0); XCTAssertEqual(k, k0)
        }
    }

    /// `linearSoftmaxesDeferredK`: q as `linearSoftmaxes`; k rows exp(k − max) with kInverse = 1/Σ, so
    /// that k · kInverse is the softmax over positions; against float64.
    func testLinearSoftmaxesDeferredKMatchesPlainSoftmax() {
        for (n, dh) in [(576, 32), (37, 5), (16, 3), (9, 32)] {
            let q0 = randomArray(dh * n, seed: UInt64(n + dh)).map { $0 * 6 }
            let k0 = randomArray(dh * n, seed: UInt64(n * 5 + dh)).map { $0 * 6 }
            let scale: Float = 0.3
            var q = q0, k = k0, inv = [Float](repeating: .nan, count: dh)
            q.withUnsafeMutableBufferPointer { qp in k.withUnsafeMutableBufferPointer { kp in inv.withUnsafeMutableBufferPointer { ip in
                UnetAttentionCore.linearSoftmaxesDeferredK(q: qp.baseAddress!, k: kp.baseAddress!, positions: n, dimHead: dh, scale: scale,
                                                           kInverse: ip.baseAddress!)
            } } }
            var wq = 0.0, wk = 0.0
            for i in 0..<n {
                let m = (0..<dh).map { Double(q0[$0 * n + i]) }.max()!
                let s = (0..<dh).reduce(0.0) { $0 + exp(Double(q0[$1 * n + i]) - m) }
                for d in 0..<dh {
                    let e = exp(Double(q0[d * n + i]) - m) / s * Double(scale)
                    wq = max(wq, abs(Double(q[d * n + i]) - e) / e)
                }
            }
            for d in 0..<dh {
                let m = (0..<n).map { Double(k0[d * n + $0]) }.max()!
                let s = (0..<n).reduce(0.0) { $0 + exp(Double(k0[d * n + $1]) - m) }
                for i in 0..<n {
                    let e = exp(Double(k0[d * n + i]) - m) / s
                    wk = max(wk, abs(Double(k[d * n + i]) * Double(inv[d]) - e) / e)
                }
            }
            XCTAssertLessThan(wq, 2e-5, "q softmax n \(n) dh \(dh)")
            XCTAssertLessThan(wk, 2e-5, "deferred k softmax n \(n) dh \(dh)")
        }
    }

    /// `exp16NonPositive` against float64 exp over the softmax's input range [−88, 0]: within 2 ulp
    /// above the float32 normal range's underflow region, and identical to `exp16` there.
    func testExpNonPositiveWithinTwoUlp() {
        var worstUlp = 0.0
        var x: Float = -87
        while x <= 0 {
            let v = SIMD16<Float>((0..<16).map { x + Float($0) * 1e-3 })
            let e = UnetAttentionCore.exp16NonPositive(v), e0 = UnetAttentionCore.exp16(v)
            for l in 0..<16 where v[l] <= 0 {
                let ref = Foundation.exp(Double(v[l]))
                worstUlp = max(worstUlp, abs(Double(e[l]) - ref) / Double(Float(ref).ulp))
                XCTAssertEqual(e[l], e0[l], "exp16NonPositive differs from exp16 at \(v[l])")
            }
            x += 0.0371
        }
        XCTAssertLessThanOrEqual(worstUlp, 2, "exp16NonPositive: worst error \(worstUlp) ulp")
    }

    /// `gemmTN` (A stored transposed), `gemm32` (8 × 2 tiles) against float64, rows not multiples of 8,
    /// group counts not multiples of 3, strides larger than the shapes.
    func testTransposedAndNarrowGemmsMatchPlainLoops() {
        for (M, groups, K) in [(8, 3, 24), (13, 16, 48), (5, 1, 7), (24, 4, 20), (576, 16, 24), (864, 2, 96), (17, 5, 9)] {
            let N = 16 * groups, lda = M + 3, ldb = N + 16, ldc = N + 5
            let a = randomArray(K * lda, seed: UInt64(M + K)), b = randomArray(K * ldb, seed: UInt64(N + K))
            var c = [Float](repeating: .nan, count: M * ldc)
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                UnetAttentionCore.gemmTN(M: M, N: N, K: K, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb, c: cp.baseAddress!, ldc: ldc)
            } } }
            var worst = 0.0
            for i in 0..<M {
                for j in 0..<N {
                    var e = 0.0
                    for k in 0..<K { e += Double(a[k * lda + i]) * Double(b[k * ldb + j]) }
                    worst = max(worst, abs(Double(c[i * ldc + j]) - e) / (1 + abs(e)))
                }
                XCTAssertTrue(c[i * ldc + N].isNaN, "gemmTN wrote past row \(i)")
            }
            XCTAssertLessThan(worst, 1e-5, "gemmTN M \(M) N \(N) K \(K)")
        }
        for (M, K) in [(8, 32), (24, 576), (13, 144), (3, 5), (48, 32)] {
            let lda = K + 2, ldb = 48, ldc = 37
            let a = randomArray(M * lda, seed: UInt64(M * 3 + K)), b = randomArray(K * ldb, seed: UInt64(K + 1))
            var c = [Float](repeating: .nan, count: M * ldc)
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                UnetAttentionCore.gemm32(M: M, K: K, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb, c: cp.baseAddress!, ldc: ldc)
            } } }
            var worst = 0.0
            for i in 0..<M {
                for j in 0..<32 {
                    var e = 0.0
                    for k in 0..<K { e += Double(a[i * lda + k]) * Double(b[k * ldb + j]) }
                    worst = max(worst, abs(Double(c[i * ldc + j]) - e) / (1 + abs(e)))
                }
                XCTAssertTrue(c[i * ldc + 32].isNaN, "gemm32 wrote past row \(i)")
            }
            XCTAssertLessThan(worst, 1e-5, "gemm32 M \(M) K \(K)")
        }
    }

    /// `columnSoftmaxDeferred`: each column of kᵀ becomes exp(x − max), `inverse` 1/Σ, against float64;
    /// columns outside the groups are untouched.
    func testColumnSoftmaxDeferredMatchesPlainSoftmax() {
        for (n, groups) in [(576, 2), (144, 1), (16, 2), (1, 1)] {
            let stride = 16 * groups + 16
            let k0 = randomArray(n * stride, seed: UInt64(n + groups)).map { $0 * 8 }
            var k = k0, inv = [Float](repeating: .nan, count: 16 * groups)
            k.withUnsafeMutableBufferPointer { kp in inv.withUnsafeMutableBufferPointer { ip in
                UnetAttentionCore.columnSoftmaxDeferred(k: kp.baseAddress!, rows: n, stride: stride, groups: groups, inverse: ip.baseAddress!)
            } }
            var worst = 0.0
            for col in 0..<(16 * groups) {
                let m = (0..<n).map { Double(k0[$0 * stride + col]) }.max()!
                let s = (0..<n).reduce(0.0) { $0 + exp(Double(k0[$1 * stride + col]) - m) }
                for r in 0..<n {
                    let e = exp(Double(k0[r * stride + col]) - m) / s
                    worst = max(worst, abs(Double(k[r * stride + col]) * Double(inv[col]) - e) / e)
                }
            }
            for r in 0..<n { for col in (16 * groups)..<stride { XCTAssertEqual(k[r * stride + col], k0[r * stride + col]) } }
            XCTAssertLessThan(worst, 2e-5, "column softmax n \(n) groups \(groups)")
        }
    }
}
