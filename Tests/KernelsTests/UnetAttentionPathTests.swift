import Foundation
import Kernels
import XCTest

/// The small-level attention paths (frames batched in the spatial linear attention, heads split over
/// tasks in the temporal attention) against the session-3 paths they replace, on small shapes with
/// planes that are not whole 16-lane groups, uneven head splits and batch 2, on both the portable
/// and (if the CPU has it) the AVX-512 path. The session-3 paths are themselves checked against
/// float64 references in Unet3DGoldenTests.
final class UnetAttentionPathTests: XCTestCase {
    override func tearDown() {
        UnetAttention.spatialBatched = 1
        UnetAttention.temporalHeadGroups = 0
    }


    private func delta(_ y: Tensor, _ x: Tensor) -> Tensor {
        Tensor(shape: x.shape, data: zip(y.scalars, x.scalars).map { $0 - $1 })
    }

    private func spatial(_ B: Int, _ C: Int, _ F: Int, _ H: Int, _ W: Int, heads: Int, dh: Int, mode: Int) {
        let hidden = heads * dh
        let x = random([B, C, F, H, W], seed: 41)
        let gamma = Tensor(shape: [1, C, 1, 1, 1], data: random([C], seed: 42, scale: 0.5).scalars.map { 1 + $0 })
        let wq = random([3 * hidden, C, 1, 1], seed: 43, scale: 0.3), wo = random([C, hidden, 1, 1], seed: 44, scale: 0.1)
        let bo = random([C], seed: 45, scale: 0.1)
        UnetAttention.spatialBatched = 0
        let old = Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, toOutBias: bo, heads: heads)
        for contextKernel in [1, 0] {
            UnetAttention.spatialBatched = mode
            UnetAttention.spatialContextKernel = contextKernel
            let new = Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, toOutBias: bo, heads: heads)
            UnetAttention.spatialBatched = 1
            UnetAttention.spatialContextKernel = 1
            XCTAssertTrue(new.scalars.allSatisfy { $0.isFinite }, "spatial \(x.shape): non-finite output")
            assertClose(delta(new, x), delta(old, x), rel: 1e-5,
                        "spatial linear attention \(x.shape), \(heads)×\(dh), mode \(mode), context kernel \(contextKernel), AVX-512 \(KernelContext.useAVX512)")
        }
    }

    /// Frames batched: 3×3 and 6×6 planes (the Unet's levels 3 and 2), a 5×7 plane with C ≤ dh (the
    /// per-frame path folds the value projection there), batch 2, and a 12×12 plane forced (mode 2).
    func testSpatialBatchedMatchesPerFramePath() {
        onBothKernelPaths {
            spatial(2, 48, 5, 3, 3, heads: 8, dh: 32, mode: 1)
            spatial(1, 96, 4, 6, 6, heads: 8, dh: 32, mode: 1)
            spatial(2, 24, 3, 5, 7, heads: 8, dh: 32, mode: 1)
            spatial(1, 20, 3, 12, 12, heads: 3, dh: 16, mode: 2)
            spatial(2, 40, 2, 4, 4, heads: 5, dh: 8, mode: 2)
        }
    }

    private func temporal(_ B: Int, _ C: Int, _ F: Int, _ H: Int, _ W: Int, heads: Int, dh: Int, groups: Int) {
        let hidden = heads * dh
        let x = random([B, C, F, H, W], seed: 51)
        let gamma = Tensor(shape: [1, C, 1, 1, 1], data: random([C], seed: 52, scale: 0.5).scalars.map { 1 + $0 })
        let wq = random([3 * hidden, C], seed: 53, scale: 0.3), wo = random([C, hidden], seed: 54, scale: 0.1)
        let freqs = (0..<(dh / 4)).map { Float(1 / pow(10000.0, Double(2 * $0) / Double(dh / 2))) }
        let bias = AttentionOps.relativePositionBias(table: random([32, heads], seed: 55), tokens: F, maxDistance: 32)
        UnetAttention.temporalHeadGroups = 1
        let old = Unet3D.temporalAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, heads: heads, freqs: freqs, bias: bias)
        UnetAttention.temporalHeadGroups = groups
        let new = Unet3D.temporalAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, heads: heads, freqs: freqs, bias: bias)
        UnetAttention.temporalHeadGroups = 0
        XCTAssertTrue(new.scalars.allSatisfy { $0.isFinite }, "temporal \(x.shape): non-finite output")
        assertClose(delta(new, x), delta(old, x), rel: 1e-5,
                    "temporal attention \(x.shape), \(heads)×\(dh), \(groups) head groups, AVX-512 \(KernelContext.useAVX512)")
    }

    /// Heads split over tasks: 8 heads in 3 (uneven) and 4 groups, 3×3 and 6×6 planes (partial tiles),
    /// a 4×4 plane (one whole 16-lane tile), C ≤ dh (folded value projection on AVX-512), batch 2,
    /// and the automatic choice (0) at the Unet's 3×3 level.
    func testTemporalHeadSplitMatchesFusedPath() {
        onBothKernelPaths {
            temporal(2, 48, 24, 3, 3, heads: 8, dh: 32, groups: 3)
            temporal(1, 24, 24, 6, 6, heads: 8, dh: 32, groups: 2)
            temporal(2, 96, 7, 4, 4, heads: 8, dh: 32, groups: 4)
            temporal(1, 40, 5, 2, 5, heads: 5, dh: 16, groups: 2)
            temporal(1, 192, 24, 3, 3, heads: 8, dh: 32, groups: 0)
        }
    }

    /// Session 5: the fused attention passes (`UnetAttention.fusedPasses` 3 and 7) against the session-4
    /// cores (0), whole blocks: temporal with the value projection folded (C ≤ dh) and not, whole and
    /// partial 16-lane tiles, frame counts that are not multiples of the 6 × 4 register blocks, no
    /// rotary on part of the features (dh 32 with 8 pairs), head groups; spatial per frame at level-0
    /// and level-1 shapes (kᵀ path at 7), with the per-frame path forced on 3×3 and 4×4 planes, dh 16;
    /// frames batched (kᵀ path at 15) on 6×6, 3×3, 5×5 and forced 4×4 planes, batch 2.
    func testFusedPassesMatchSessionFourCores() {
        defer { UnetAttention.fusedPasses = 15; UnetAttention.spatialBatched = 1; UnetAttention.temporalHeadGroups = 0 }
        func temporalBlock(_ B: Int, _ C: Int, _ F: Int, _ H: Int, _ W: Int, heads: Int, dh: Int, groups: Int, pairs: Int) {
            let hidden = heads * dh
            let x = random([B, C, F, H, W], seed: 71)
            let gamma = Tensor(shape: [1, C, 1, 1, 1], data: random([C], seed: 72, scale: 0.5).scalars.map { 1 + $0 })
            let wq = random([3 * hidden, C], seed: 73, scale: 0.3), wo = random([C, hidden], seed: 74, scale: 0.1)
            let freqs = (0..<pairs).map { Float(1 / pow(10000.0, Double(2 * $0) / Double(dh))) }
            let bias = AttentionOps.relativePositionBias(table: random([32, heads], seed: 75), tokens: F, maxDistance: 32)
            UnetAttention.temporalHeadGroups = groups
            var outs: [Tensor] = []
            for f in [0, 3] {
                UnetAttention.fusedPasses = f
                outs.append(Unet3D.temporalAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, heads: heads, freqs: freqs, bias: bias))
            }
            XCTAssertTrue(outs[1].scalars.allSatisfy { $0.isFinite }, "temporal \(x.shape): non-finite output")
            assertClose(delta(outs[1], x), delta(outs[0], x), rel: 1e-5,
                        "fused temporal \(x.shape), \(heads)×\(dh), \(pairs) pairs, \(groups) groups, AVX-512 \(KernelContext.useAVX512)")
        }
        func spatialBlock(_ B: Int, _ C: Int, _ F: Int, _ H: Int, _ W: Int, heads: Int, dh: Int, mode: Int) {
            let hidden = heads * dh
            let x = random([B, C, F, H, W], seed: 81)
            let gamma = Tensor(shape: [1, C, 1, 1, 1], data: random([C], seed: 82, scale: 0.5).scalars.map { 1 + $0 })
            let wq = random([3 * hidden, C, 1, 1], seed: 83, scale: 0.3), wo = random([C, hidden, 1, 1], seed: 84, scale: 0.1)
            let bo = random([C], seed: 85, scale: 0.1)
            UnetAttention.spatialBatched = mode
            var outs: [Tensor] = []
            for f in [0, 3, 7, 15] {
                UnetAttention.fusedPasses = f
                outs.append(Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, toOutBias: bo, heads: heads))
            }
            for (i, f) in [(1, 3), (2, 7), (3, 15)] {
                XCTAssertTrue(outs[i].scalars.allSatisfy { $0.isFinite }, "spatial \(x.shape): non-finite output")
                assertClose(delta(outs[i], x), delta(outs[0], x), rel: 1e-5,
                            "fused \(f) spatial \(x.shape), \(heads)×\(dh), mode \(mode), AVX-512 \(KernelContext.useAVX512)")
            }
        }
        onBothKernelPaths {
            temporalBlock(1, 24, 24, 6, 6, heads: 8, dh: 32, groups: 1, pairs: 16)
            temporalBlock(2, 48, 13, 4, 5, heads: 8, dh: 32, groups: 1, pairs: 16)
            temporalBlock(1, 40, 7, 3, 3, heads: 4, dh: 16, groups: 2, pairs: 8)
            temporalBlock(1, 16, 10, 4, 4, heads: 2, dh: 32, groups: 1, pairs: 8)
            temporalBlock(1, 192, 24, 3, 3, heads: 8, dh: 32, groups: 0, pairs: 16)
            spatialBlock(1, 24, 3, 8, 8, heads: 8, dh: 32, mode: 1)
            spatialBlock(2, 48, 2, 12, 12, heads: 8, dh: 32, mode: 1)
            spatialBlock(1, 96, 3, 3, 3, heads: 8, dh: 32, mode: 0)
            spatialBlock(1, 20, 2, 5, 7, heads: 3, dh: 16, mode: 0)
            spatialBlock(1, 20, 2, 4, 4, heads: 3, dh: 16, mode: 0)
            spatialBlock(2, 16, 2, 4, 8, heads: 2, dh: 32, mode: 0)
            spatialBlock(1, 24, 2, 24, 24, heads: 8, dh: 32, mode: 1)
            spatialBlock(2, 96, 5, 6, 6, heads: 8, dh: 32, mode: 1)
            spatialBlock(1, 192, 4, 3, 3, heads: 8, dh: 32, mode: 1)
            spatialBlock(1, 40, 3, 5, 5, heads: 5, dh: 16, mode: 1)
            spatialBlock(1, 20, 3, 4, 4, heads: 3, dh: 16, mode: 2)
        }
    }

    func testAutomaticHeadGroupsOnlyWhenWorkersWouldIdle() {
        UnetAttention.temporalHeadGroups = 0
        XCTAssertEqual(UnetAttention.headGroups(tasks: 36, heads: 8, workers: 2), 1)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 3, heads: 8, workers: 2), 1)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 8, workers: 2), 2)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 8, workers: 4), 4)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 2, heads: 8, workers: 8), 4)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 8, workers: 1), 1)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 3, heads: 8, workers: 2), 1)
        UnetAttention.temporalHeadGroups = -1
        XCTAssertEqual(UnetAttention.headGroups(tasks: 3, heads: 8, workers: 2), 2)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 8, workers: 2), 2)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 4, heads: 8, workers: 2), 1)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 9, heads: 8, workers: 2), 1)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 36, heads: 8, workers: 2), 1)
        UnetAttention.temporalHeadGroups = 3
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 2, workers: 2), 2)
    }

    /// Not a check: with TUMORSTREAM_ATTN_BENCH=1, prints interleaved paired timings (new ÷ old, the
    /// median over rounds) of the attention blocks at the Unet's small levels (batch 1, 24 frames).
    func testBenchSmallLevels() throws {
        guard ProcessInfo.processInfo.environment["TUMORSTREAM_ATTN_BENCH"] == "1" else {
            throw XCTSkip("set TUMORSTREAM_ATTN_BENCH=1 to time the small-level attention blocks")
        }
        let rounds = Int(ProcessInfo.processInfo.environment["TUMORSTREAM_ATTN_ROUNDS"] ?? "") ?? 40
        let newSpatial = Int(ProcessInfo.processInfo.environment["TUMORSTREAM_ATTN_SPATIAL"] ?? "") ?? 1
        // TUMORSTREAM_ATTN_FUSED=N: old = `fusedPasses` 0, new = N (both with the default paths otherwise),
        // instead of the session-4 path comparison; adds the level-0 shape (24 channels on 24×24).
        let fusedAB = Int(ProcessInfo.processInfo.environment["TUMORSTREAM_ATTN_FUSED"] ?? "")
        defer { UnetAttention.fusedPasses = 15 }
        let (heads, dh, F) = (8, 32, 24), hidden = heads * dh
        func time(_ body: () -> Tensor) -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = body()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        }
        func report(_ name: String, _ a: [Double], _ b: [Double]) {
            let r = zip(b, a).map { $0 / $1 }.sorted()
            print(String(format: "attn-bench %-26@ old min %6.2f ms  new min %6.2f ms  median paired new/old %.3f",
                         name as NSString, a.min()!, b.min()!, r[r.count / 2]))
        }
        for (C, S) in (fusedAB == nil ? [] : [(24, 24)]) + [(48, 12), (96, 6), (192, 3), (96, 3), (48, 6), (24, 12)] {
            let x = random([1, C, F, S, S], seed: 61)
            let gamma = Tensor(shape: [1, C, 1, 1, 1], data: random([C], seed: 62, scale: 0.5).scalars.map { 1 + $0 })
            let wq = random([3 * hidden, C, 1, 1], seed: 63, scale: 0.3), wo = random([C, hidden, 1, 1], seed: 64, scale: 0.1)
            let bo = random([C], seed: 65, scale: 0.1)
            let wq2 = wq.reshaped([3 * hidden, C]), wo2 = wo.reshaped([C, hidden])
            let freqs = (0..<16).map { Float(1 / pow(10000.0, Double(2 * $0) / 32)) }
            let bias = AttentionOps.relativePositionBias(table: random([32, heads], seed: 66), tokens: F, maxDistance: 32)
            var so: [Double] = [], sn: [Double] = [], to: [Double] = [], tn: [Double] = []
            func spatial(_ mode: Int) -> Double {
                if let fusedAB { UnetAttention.fusedPasses = mode == 0 ? 0 : fusedAB } else { UnetAttention.spatialBatched = mode }
                return time { Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, toOutBias: bo, heads: heads) }
            }
            func temporal(_ groups: Int) -> Double {
                if let fusedAB { UnetAttention.fusedPasses = groups == 1 ? 0 : fusedAB } else { UnetAttention.temporalHeadGroups = groups }
                return time { Unet3D.temporalAttentionBlock(x, gamma: gamma, toQKV: wq2, toOut: wo2, heads: heads, freqs: freqs, bias: bias) }
            }
            for r in 0...rounds {
                // Old first in even rounds, new first in odd ones.
                let (a, b) = r % 2 == 0 ? (spatial(0), spatial(newSpatial)) : { let b = spatial(newSpatial); return (spatial(0), b) }()
                let (c, d) = r % 2 == 0 ? (temporal(1), temporal(0)) : { let d = temporal(0); return (temporal(1), d) }()
                if r > 0 { so.append(a); sn.append(b); to.append(c); tn.append(d) }
            }
            UnetAttention.spatialBatched = 1
            UnetAttention.temporalHeadGroups = 0
            report("spatial C=\(C) \(S)x\(S)", so, sn)
            report("temporal C=\(C) \(S)x\(S)", to, tn)
        }
    }
}
