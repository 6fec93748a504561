import XCTest
import Kernels

/// The session-4 ResnetBlock paths of the Unet step against the code they replace, on small shapes,
/// on the portable path and (when the CPU has it) the AVX-512 path.
final class UnetResnetOpsTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    private func forEachDispatch(_ body: (String) -> Void) {
        let saved = KernelContext.useAVX512
        defer { KernelContext.useAVX512 = saved }
        for avx in CPUFeatures.hasAVX512F ? [false, true] : [false] {
            KernelContext.useAVX512 = avx
            body(avx ? "avx512" : "portable")
        }
    }

    /// `pointwiseConv3d` equals `conv3d` with a 1×1×1 kernel and the naive definition: batch of 2, with
    /// and without bias, spatial sizes below and above one worker's run, odd sizes.
    func testPointwiseConvolutionMatchesConv3d() {
        var rng = SeededRandom(seed: 71)
        forEachDispatch { path in
            for (cin, cout, size, hasBias) in [(5, 3, [2, 3, 3], true), (7, 9, [3, 11, 13], false), (4, 6, [4, 12, 12], true),
                                               (1, 2, [1, 1, 1], true)] {
                let x = rng.tensor([2, cin] + size)
                let w = rng.tensor([cout, cin, 1, 1, 1], scale: 0.5)
                let bias = hasBias ? rng.tensor([cout]) : nil
                let y = x.pointwiseConv3d(weight: w, bias: bias)
                XCTAssertEqual(y.shape, [2, cout] + size)
                assertClose(y, x.conv3d(weight: w, bias: bias), rtol: 1e-5, atol: 1e-5, "\(path) \(cin)→\(cout) \(size)")
                let e = naiveConv3d(x, w, bias, stride: [1, 1, 1], front: [0, 0, 0], back: [0, 0, 0], replicate: false, groups: 1)
                assertClose(y, e, rtol: 1e-4, atol: 1e-4, "\(path) naive \(cin)→\(cout) \(size)")
            }
        }
    }

    /// GroupNorm + scale/shift + SiLU with the residual added in the same pass is bit-identical to the
    /// separate `add` afterwards.
    func testGroupNormWithResidualEqualsSeparateAdd() {
        var rng = SeededRandom(seed: 72)
        forEachDispatch { path in
            for shape in [[2, 16, 3, 5, 7], [1, 24, 4, 6, 6], [1, 8, 1, 1, 1]] {
                let c = shape[1]
                let x = rng.tensor(shape, scale: 3), r = rng.tensor(shape)
                let w = rng.tensor([c]), b = rng.tensor([c])
                let scale = rng.tensor([shape[0], c], scale: 0.3), shift = rng.tensor([shape[0], c], scale: 0.3)
                var separate = x
                NetworkOps.groupNorm(&separate, groups: 8, eps: 1e-5, weight: w, bias: b, scale: scale, shift: shift, silu: true)
                separate.add(r)
                var fused = x
                NetworkOps.groupNorm(&fused, groups: 8, eps: 1e-5, weight: w, bias: b, scale: scale, shift: shift, silu: true,
                                     residual: r)
                XCTAssertEqual(fused.scalars, separate.scalars, "\(path) \(shape)")
                var unfused = x
                NetworkOps.groupNorm(&unfused, groups: 8, eps: 1e-5, weight: w, bias: b, scale: scale, shift: shift, silu: true)
                XCTAssertNotEqual(fused.scalars, unfused.scalars, "\(path): the residual was added")
            }
        }
    }

    /// A whole Unet3D step with every session-4 switch on equals the step with all of them off (the
    /// previous code) within float reassociation, on the fixture's small Unet.
    func testUnetStepSwitchesAgree() throws {
        let unet = try Unet3DGoldenTests.model.get()
        var rng = SeededRandom(seed: 73)
        let x = rng.tensor([1, 8, 8, 16, 16]), cond = rng.tensor([1, unet.architecture.inputChannels - 8, 8, 16, 16])
        let saved = (Unet3D.singleThreadedBLAS, Unet3D.fuseResidualAdd, Unet3D.pointwiseGEMM, WholeIm2col.shiftedRows)
        defer {
            (Unet3D.singleThreadedBLAS, Unet3D.fuseResidualAdd, Unet3D.pointwiseGEMM, WholeIm2col.shiftedRows) = saved
        }
        forEachDispatch { path in
            (Unet3D.singleThreadedBLAS, Unet3D.fuseResidualAdd, Unet3D.pointwiseGEMM, WholeIm2col.shiftedRows) = (false, false, false, false)
            let before = unet(x, cond: cond, timesteps: [37])
            (Unet3D.singleThreadedBLAS, Unet3D.fuseResidualAdd, Unet3D.pointwiseGEMM, WholeIm2col.shiftedRows) = (true, true, true, true)
            let blasBefore = BLASThreads.count
            let after = unet(x, cond: cond, timesteps: [37])
            XCTAssertEqual(BLASThreads.count, blasBefore, "\(path): OpenBLAS threads restored after the step")
            assertClose(after, before, rtol: 1e-4, atol: 1e-4, path)
        }
    }

    /// Session 5: the GroupNorm passes that normalise a convolution output in its own storage
    /// (`Unet3D.normsInPlace`) give the same floats as the copying path, and leave the step's inputs as they were.
    func testNormsInPlaceMatchTheCopyingPathAndKeepInputs() throws {
        let unet = try Unet3DGoldenTests.model.get()
        var rng = SeededRandom(seed: 91)
        let x = rng.tensor([1, 8, 8, 16, 16]), cond = rng.tensor([1, unet.architecture.inputChannels - 8, 8, 16, 16])
        let xBefore = x.scalars, condBefore = cond.scalars
        let saved = Unet3D.normsInPlace
        defer { Unet3D.normsInPlace = saved }
        forEachDispatch { path in
            Unet3D.normsInPlace = false
            let copying = unet(x, cond: cond, timesteps: [37])
            Unet3D.normsInPlace = true
            let inPlace = unet(x, cond: cond, timesteps: [37])
            XCTAssertEqual(inPlace.scalars, copying.scalars, "\(path): in-place norms change the step's floats")
            XCTAssertEqual(x.scalars, xBefore, "\(path): the step changed its input x")
            XCTAssertEqual(cond.scalars, condBefore, "\(path): the step changed its input cond")
        }
    }

    /// Session 5 (resnet ops): the small passes run on the calling thread (`NetworkOps.inlineBelow`) give the
    /// same floats as the split ones, and so do tasks handed out one at a time (`NetworkOps.singleTasks`); all blocks' time-MLP projections in one GEMM (`Unet3D.batchedTimeMLP`)
    /// give the step of the per-block GEMMs within float reassociation; the phase-timed ResnetBlock path
    /// (`Unet3D.phaseTap`) gives the same floats as the plain one and names every op.
    func testInlinePassesBatchedTimeMLPAndPhaseTapAgree() throws {
        let unet = try Unet3DGoldenTests.model.get()
        var rng = SeededRandom(seed: 74)
        let savedInline = NetworkOps.inlineBelow, savedBatched = Unet3D.batchedTimeMLP, savedSingle = NetworkOps.singleTasks
        defer {
            NetworkOps.inlineBelow = savedInline; NetworkOps.singleTasks = savedSingle
            Unet3D.batchedTimeMLP = savedBatched; Unet3D.phaseTap = nil
        }
        forEachDispatch { path in
            for shape in [[2, 16, 3, 5, 7], [1, 24, 4, 6, 6], [1, 24, 4, 16, 16]] {
                let c = shape[1]
                let x = rng.tensor(shape, scale: 3), r = rng.tensor(shape)
                let w = rng.tensor([c]), b = rng.tensor([c])
                let scale = rng.tensor([shape[0], c], scale: 0.3), shift = rng.tensor([shape[0], c], scale: 0.3)
                var results: [[Float]] = []
                for (limit, single) in [(0, false), (1 << 30, false), (0, true)] {
                    NetworkOps.inlineBelow = limit
                    NetworkOps.singleTasks = single
                    var y = x
                    NetworkOps.groupNorm(&y, groups: 8, eps: 1e-5, weight: w, bias: b, scale: scale, shift: shift, silu: true, residual: r)
                    var s = x
                    NetworkOps.silu(&s)
                    var a = x
                    let stats = NetworkOps.addReturningStatistics(&a, r, groups: 8)
                    results.append(y.scalars + s.scalars + a.scalars + stats.mean.map(Float.init) + stats.variance.map(Float.init))
                }
                XCTAssertEqual(results[0], results[1], "\(path) \(shape): inline passes")
                XCTAssertEqual(results[0], results[2], "\(path) \(shape): single tasks")
            }
            NetworkOps.inlineBelow = savedInline; NetworkOps.singleTasks = savedSingle
            let xs = rng.tensor([2, 8, 8, 16, 16]), cond = rng.tensor([2, unet.architecture.inputChannels - 8, 8, 16, 16])
            Unet3D.batchedTimeMLP = false
            let perBlock = unet(xs, cond: cond, timesteps: [37, 180])
            Unet3D.batchedTimeMLP = true
            let batched = unet(xs, cond: cond, timesteps: [37, 180])
            assertClose(batched, perBlock, rtol: 1e-4, atol: 1e-4, "\(path): batched time MLP")
            XCTAssertNotEqual(Array(batched.scalars[0..<100]), Array(batched.scalars[8 * 8 * 256..<(8 * 8 * 256 + 100)]),
                              "\(path): the two batch elements differ")
            var names = Set<String>()
            Unet3D.phaseTap = { names.insert($0) }
            let tapped = unet(xs, cond: cond, timesteps: [37, 180])
            Unet3D.phaseTap = nil
            XCTAssertEqual(tapped.scalars, batched.scalars, "\(path): phase-timed path")
            XCTAssertTrue(["mlp", "conv1", "norm1", "conv2", "res_conv"].allSatisfy(names.contains), "\(path): \(names)")
        }
    }
}
