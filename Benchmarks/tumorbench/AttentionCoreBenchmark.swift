import Foundation
import Kernels
import KernelsAVX512

/// `tumorbench attn-core [--runs N] [--variants V1,V2,…] [CASE-SUBSTRING]`: the AVX-512 micro-kernels of
/// the Unet3D attention blocks (`KernelsAVX512.UnetAttentionCore`) alone, single-threaded, at the
/// level-0 shapes of one Unet step (24 channels, 24 frames, 24×24 planes, 8 heads of 32), under the
/// settings of `UnetAttentionCore.variant` interleaved round by round (default 0 = session-3 kernels,
/// 3 = session-4; `temporal` and `softmax`: bit 3 selects the session-5 fused temporal passes, e.g.
/// `--variants 0,8 temporal`). Prints per setting the best GFLOP/s (FLOP = 2·MAC) and the median over rounds of
/// its time ÷ the first setting's time in the same round (the number to trust on a noisy machine),
/// plus single-threaded `cblas_sgemm` on the same GEMM shape as a yardstick.
enum AttentionCoreBenchmark {
    static func run(_ args: [String]) {
        BLASCoreType.reexecIfUnrecognised()
        guard KernelContext.useAVX512 else {
            print("attn-core: no AVX-512F (or TUMORSTREAM_NO_AVX512 set): nothing to time")
            return
        }
        var rounds = 20, variants = [0, 3], only: String?
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--runs" where i + 1 < args.count: rounds = max(1, Int(args[i + 1]) ?? rounds); i += 1
            case "--variants" where i + 1 < args.count:
                let v = args[i + 1].split(separator: ",").compactMap { Int($0) }
                if !v.isEmpty { variants = v }
                i += 1
            default: only = args[i]
            }
            i += 1
        }
        let savedBLAS = BLASThreads.count, savedVariant = UnetAttentionCore.variant
        BLASThreads.count = 1
        defer { BLASThreads.count = savedBLAS; UnetAttentionCore.variant = savedVariant }
        print("attn-core (single thread, \(rounds) interleaved rounds after one warm-up; load average \(NetworksBenchmark.loadAverage()))")
        func want(_ name: String) -> Bool { only.map { name.contains($0) } ?? true }

        // GEMM cases: (name, M, N, K, ldc, group stride, accumulate).
        let gemms: [(String, Int, Int, Int, Int, Int, Bool)] = [
            ("gemm spatial qk 512×576×24", 512, 576, 24, 576, 16, false),
            ("gemm spatial out 24×576×256", 24, 576, 256, 13_824, 16, true),
            ("gemm temporal qk 512×384×24", 512, 384, 24, 384, 16, false),
            ("gemm temporal out 24×384×192", 24, 384, 192, 13_824, 576, true),
        ]
        for (name, M, N, K, ldc, gs, acc) in gemms where want(name) {
            let a = random(M * K, seed: 1), b = random(K * N, seed: 2)
            var c = [Float](repeating: 0, count: (M - 1) * ldc + (N / 16 - 1) * gs + 16)
            var s = [Float](repeating: 0, count: M * N)
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        s.withUnsafeMutableBufferPointer { sp in
                            let sg = best(rounds: rounds, inner: 10) {
                                RawBLAS.sgemm(m: M, n: N, k: K, a: ap.baseAddress!, b: bp.baseAddress!, c: sp.baseAddress!)
                            }
                            report(name, flop: 2 * Double(M * N * K), rounds: rounds, inner: 10, variants: variants,
                                   sgemm: sg) {
                                UnetAttentionCore.gemm(M: M, N: N, K: K, a: ap.baseAddress!, lda: K, b: bp.baseAddress!, ldb: N,
                                                       c: cp.baseAddress!, ldc: ldc, groupStride: gs, accumulate: acc)
                            }
                        }
                    }
                }
            }
        }
        if want("gemmNT") {
            let M = 32, N = 24, K = 576
            let a = random(M * K, seed: 3), b = random(N * K, seed: 4)
            var c = [Float](repeating: 0, count: M * N)
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        report("gemmNT context 32×24×576", flop: 2 * Double(M * N * K), rounds: rounds, inner: 100,
                               variants: variants, sgemm: nil) {
                            UnetAttentionCore.gemmNT(M: M, N: N, K: K, a: ap.baseAddress!, lda: K, b: bp.baseAddress!, ldb: K,
                                                     c: cp.baseAddress!, ldc: N)
                        }
                    }
                }
            }
        }
        if want("temporal") {
            // Session 5: the level-0 temporal tile (24 frames × 16 lanes, 8 heads of 32, value rows 24 =
            // the folded input): settings with bit 3 (8) run the fused passes (`gemmRotary` +
            // `temporalHeadFused`), the others the session-4 `gemm` + `temporalHead` (scale and rotary in
            // place; inputs restored outside the timed call). FLOP: the projection, scores and values.
            let F = 24, T = 16 * F, dh = 32, heads = 8, C = 24, hidden = heads * dh
            let w = random(2 * hidden * C, seed: 7), xn = random(C * T, seed: 8)
            let bias = random(heads * F * F, seed: 9)
            let freqs = (0..<(dh / 2)).map { Float(1 / pow(10000.0, Double(2 * $0) / Double(dh))) }
            let rot = AttentionOps.Rotary(freqs: freqs, positions: F)
            var qk = [Float](repeating: 0, count: 2 * hidden * T), o = [Float](repeating: 0, count: heads * C * T)
            var s = [Float](repeating: 0, count: F * F * 16), stats = [Float](repeating: 0, count: UnetAttentionCore.fusedHeadStats(frames: F))
            let flop = 2 * Double(2 * hidden * T * C) + Double(heads) * 2 * 16 * Double(F * F * (dh + C))
            w.withUnsafeBufferPointer { wp in xn.withUnsafeBufferPointer { xp in bias.withUnsafeBufferPointer { bp in
            rot.cos.withUnsafeBufferPointer { cp in rot.sin.withUnsafeBufferPointer { sp in
            qk.withUnsafeMutableBufferPointer { qp in o.withUnsafeMutableBufferPointer { op in
            s.withUnsafeMutableBufferPointer { ssp in stats.withUnsafeMutableBufferPointer { stp in
                let (q, ob, sc) = (qp.baseAddress!, op.baseAddress!, Float(1) / Float(dh).squareRoot())
                report("temporal tile: qk proj + 8 heads", flop: flop, rounds: rounds, inner: 3, variants: variants.map { $0 | 3 }, sgemm: nil) {
                    if UnetAttentionCore.variant & 8 != 0 {
                        UnetAttentionCore.gemmRotary(M: 2 * hidden, N: T, K: C, a: wp.baseAddress!, lda: C, b: xp.baseAddress!, ldb: T,
                                                     c: q, ldc: T, dimHead: dh, cos: cp.baseAddress!, sin: sp.baseAddress!,
                                                     tablePairs: rot.pairs, pairs: dh / 2)
                        for h in 0..<heads {
                            UnetAttentionCore.temporalHeadFused(q: q + h * dh * T, k: q + (hidden + h * dh) * T, v: xp.baseAddress!,
                                                                frames: F, dimHead: dh, valueRows: C, out: ob + h * C * T, scale: sc,
                                                                bias: bp.baseAddress! + h * F * F, s: ssp.baseAddress!, stats: stp.baseAddress!)
                        }
                    } else {
                        UnetAttentionCore.gemm(M: 2 * hidden, N: T, K: C, a: wp.baseAddress!, lda: C, b: xp.baseAddress!, ldb: T,
                                               c: q, ldc: T, groupStride: 16, accumulate: false)
                        for h in 0..<heads {
                            UnetAttentionCore.temporalHead(q: q + h * dh * T, k: q + (hidden + h * dh) * T, v: xp.baseAddress!,
                                                           frames: F, dimHead: dh, valueRows: C, out: ob + h * C * T, scale: sc,
                                                           cos: cp.baseAddress!, sin: sp.baseAddress!, tablePairs: rot.pairs, pairs: dh / 2,
                                                           bias: bp.baseAddress! + h * F * F, s: ssp.baseAddress!)
                        }
                    }
                }
            } } } } } } } } }
        }
        if want("softmax") {
            // One frame: 8 heads of q and k, 32 × 576 each; the inputs are restored from a copy
            // outside the timed call.
            let n = 576, dh = 32, heads = 8
            let src = random(2 * heads * dh * n, seed: 5).map { $0 * 4 }
            var w = src, kInverse = [Float](repeating: 0, count: dh)
            kInverse.withUnsafeMutableBufferPointer { inv in
            src.withUnsafeBufferPointer { sp in
                w.withUnsafeMutableBufferPointer { wp in
                    report("linearSoftmaxes 8 heads (exps/s)", flop: Double(2 * heads * dh * n), rounds: rounds, inner: 1,
                           variants: variants, sgemm: nil, prepare: { wp.baseAddress!.update(from: sp.baseAddress!, count: src.count) }) {
                        for h in 0..<heads {
                            if UnetAttentionCore.variant & 8 != 0 {
                                UnetAttentionCore.linearSoftmaxesDeferredK(q: wp.baseAddress! + h * dh * n,
                                                                           k: wp.baseAddress! + (heads + h) * dh * n, positions: n,
                                                                           dimHead: dh, scale: 0.17, kInverse: inv.baseAddress!)
                            } else {
                                UnetAttentionCore.linearSoftmaxes(q: wp.baseAddress! + h * dh * n, k: wp.baseAddress! + (heads + h) * dh * n,
                                                                  positions: n, dimHead: dh, scale: 0.17)
                            }
                        }
                    }
                }
            }
            }
        }
    }

    static func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<n).map { _ in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1
        }
    }

    /// Best seconds per call of `body` over `rounds` timings of `inner` calls (after one warm-up).
    static func best(rounds: Int, inner: Int, _ body: () -> Void) -> Double {
        var t = Double.infinity
        for r in 0...rounds {
            let t0 = KernelsBenchmark.now()
            for _ in 0..<inner { body() }
            if r > 0 { t = min(t, (KernelsBenchmark.now() - t0) / Double(inner)) }
        }
        return t
    }

    static func report(_ name: String, flop: Double, rounds: Int, inner: Int, variants: [Int], sgemm: Double?,
                       prepare: () -> Void = {}, _ body: () -> Void) {
        var times = [[Double]](repeating: [], count: variants.count)
        for r in 0...rounds {
            for (i, v) in variants.enumerated() {
                UnetAttentionCore.variant = v
                var t = 0.0
                for _ in 0..<inner {
                    prepare()
                    let t0 = KernelsBenchmark.now()
                    body()
                    t += KernelsBenchmark.now() - t0
                }
                if r > 0 { times[i].append(t / Double(inner)) }
            }
        }
        var line = name.padding(toLength: 34, withPad: " ", startingAt: 0)
        if let sgemm { line += String(format: " sgemm %6.1f GFLOP/s |", flop / sgemm / 1e9) }
        for (i, v) in variants.enumerated() {
            let ratios = zip(times[i], times[0]).map { $0 / $1 }.sorted()
            line += String(format: " v%d %6.1f G/s %7.1f µs ratio %.3f |", v, flop / times[i].min()! / 1e9, times[i].min()! * 1e6,
                           ratios[ratios.count / 2])
        }
        print(line)
    }
}
