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
}
