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

    static func onBothPaths(_ body: () throws -> Void) rethrows {
        let saved = KernelContext.useAVX512
        defer { KernelContext.useAVX512 = saved }
        KernelContext.useAVX512 = false
        try body()
        KernelContext.useAVX512 = true
        if KernelContext.useAVX512 { try body() }
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
        UnetAttention.spatialBatched = mode
        let new = Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: wq, toOut: wo, toOutBias: bo, heads: heads)
        UnetAttention.spatialBatched = 1
        XCTAssertTrue(new.scalars.allSatisfy { $0.isFinite }, "spatial \(x.shape): non-finite output")
        assertClose(delta(new, x), delta(old, x), rel: 1e-5,
                    "spatial linear attention \(x.shape), \(heads)×\(dh), mode \(mode), AVX-512 \(KernelContext.useAVX512)")
    }

    /// Frames batched: 3×3 and 6×6 planes (the Unet's levels 3 and 2), a 5×7 plane with C ≤ dh (the
    /// per-frame path folds the value projection there), batch 2, and a 12×12 plane forced (mode 2).
    func testSpatialBatchedMatchesPerFramePath() {
        Self.onBothPaths {
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
        Self.onBothPaths {
            temporal(2, 48, 24, 3, 3, heads: 8, dh: 32, groups: 3)
            temporal(1, 24, 24, 6, 6, heads: 8, dh: 32, groups: 2)
            temporal(2, 96, 7, 4, 4, heads: 8, dh: 32, groups: 4)
            temporal(1, 40, 5, 2, 5, heads: 5, dh: 16, groups: 2)
            temporal(1, 192, 24, 3, 3, heads: 8, dh: 32, groups: 0)
        }
    }

    func testAutomaticHeadGroupsKeepWorkersEven() {
        UnetAttention.temporalHeadGroups = 0
        XCTAssertEqual(UnetAttention.headGroups(tasks: 36, heads: 8, workers: 2), 1)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 9, heads: 8, workers: 2), 2)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 3, heads: 8, workers: 2), 2)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 8, workers: 2), 4)
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 8, workers: 1), 1)
        UnetAttention.temporalHeadGroups = 3
        XCTAssertEqual(UnetAttention.headGroups(tasks: 1, heads: 2, workers: 2), 2)
    }
}
