import XCTest
import Kernels
import KernelsAVX512

/// Session 6: the condition's share of the Unet3D init conv prepared once per sampling run
/// (`Unet3D.prepare(cond:)`, `DirectConvolution.conv3d(addend:)`) against the plain step that
/// convolves concat([x, cond]), on the portable path and (when the CPU has it) the AVX-512 path.
final class UnetConditionTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    private func forEachDispatch(_ body: (String) -> Void) {
        let saved = (KernelContext.useAVX512, KernelContext.forceDirectConvolution)
        defer { (KernelContext.useAVX512, KernelContext.forceDirectConvolution) = saved }
        // Portable; AVX-512 with the usual dispatch; AVX-512 with the direct kernels on every shape.
        let settings: [(Bool, Bool)] = CPUFeatures.hasAVX512F ? [(false, false), (true, false), (true, true)] : [(false, false)]
        for (avx, force) in settings {
            (KernelContext.useAVX512, KernelContext.forceDirectConvolution) = (avx, force)
            body(avx ? (force ? "avx512 forced direct" : "avx512") : "portable")
        }
    }

    /// The direct convolution with `addend` equals the convolution plus the addend, for the init conv's
    /// (1,7,7) forms (also on the pipelined `overlapRows` path), a strided form (space-to-depth, repacked
    /// weights), a 1-row tile and zero-padded D planes.
    func testDirectConvolutionAddendEqualsConvolutionPlusAddend() throws {
        try XCTSkipUnless(CPUFeatures.hasAVX512F, "no AVX-512F on this CPU")
        let saved = (KernelContext.useAVX512, KernelContext.forceDirectConvolution)
        defer { (KernelContext.useAVX512, KernelContext.forceDirectConvolution) = saved }
        (KernelContext.useAVX512, KernelContext.forceDirectConvolution) = (true, true)
        var rng = SeededRandom(seed: 601)
        // (cin, cout, input D×H×W, kernel, stride, pad)
        let cases: [(Int, Int, [Int], [Int], [Int], [Int])] = [
            (8, 24, [2, 24, 24], [1, 7, 7], [1, 1, 1], [0, 3, 3]),   // the init conv's x share
            (9, 24, [3, 16, 16], [1, 7, 7], [1, 1, 1], [0, 3, 3]),
            (6, 16, [3, 22, 24], [1, 4, 4], [1, 2, 2], [0, 1, 1]),   // stride 2
            (5, 2, [4, 12, 12], [1, 3, 3], [1, 1, 1], [0, 1, 1]),    // 1-row tile
            (4, 8, [2, 6, 6], [3, 3, 3], [1, 1, 1], [1, 1, 1]),      // zero-padded D planes
        ]
        for (cin, cout, size, k, s, p) in cases {
            let what = "cin \(cin) cout \(cout) \(size) k\(k) s\(s) pad \(p)"
            let x = rng.tensor([1, cin] + size), w = rng.tensor([cout, cin] + k, scale: 0.2), bias = rng.tensor([cout])
            let plain = x.conv3d(weight: w, bias: bias, stride: s, padding: Padding3d(front: p, back: p, mode: .zero))
            XCTAssertTrue(x.conv3dTakesDirectPath(weight: w, stride: s, padding: Padding3d(front: p, back: p)), what)
            let addend = rng.tensor(plain.shape)
            // The default switches, and with `overlapRows` (the pipelined fill/copy-out of (1,k,k) convs).
            for variant in [DirectConvolution.defaultVariant, DirectConvolution.defaultVariant | 16] {
            DirectConvolution.setVariant(variant)
            defer { DirectConvolution.setVariant(DirectConvolution.defaultVariant) }
            var y = Tensor(shape: plain.shape, repeating: .nan)
            let o = Array(plain.shape[2...])
            x.scalars.withUnsafeBufferPointer { xp in w.scalars.withUnsafeBufferPointer { wp in
            bias.scalars.withUnsafeBufferPointer { bp in addend.scalars.withUnsafeBufferPointer { ap in
                y.withUnsafeMutableBufferPointer { yp in
                    DirectConvolution.conv3d(input: xp.baseAddress!, channels: cin, inputDims: (size[0], size[1], size[2]),
                                             weight: wp.baseAddress!, outChannels: cout, kernel: (k[0], k[1], k[2]),
                                             stride: (s[0], s[1], s[2]), front: (p[0], p[1], p[2]), replicate: false,
                                             bias: bp.baseAddress!, output: yp.baseAddress!, outputDims: (o[0], o[1], o[2]),
                                             threads: 2, addend: ap.baseAddress!)
                }
            }}}}
            assertClose(y, plain + addend, rtol: 1e-5, atol: 1e-5, "variant \(variant): \(what)")
            XCTAssertFalse(y.scalars.contains { $0.isNaN }, "variant \(variant): \(what): every output written")
            }
        }
    }

    /// A step with the prepared condition gives the plain step's init-conv output and ε within float
    /// reassociation, on every dispatch, batch 1 and 2, 16² and 8² planes (the latter off the direct
    /// kernels unless forced); with `reuseConditionShare` off the prepared step is the plain step.
    func testPreparedConditionMatchesThePlainStep() throws {
        let unet = try Unet3DGoldenTests.model.get()
        let cx = unet.architecture.outputChannels, cc = unet.architecture.inputChannels - cx
        var rng = SeededRandom(seed: 602)
        let saved = Unet3D.reuseConditionShare
        defer { Unet3D.reuseConditionShare = saved }
        for (batch, size) in [(1, [8, 16, 16]), (2, [4, 8, 8])] {
            let x = rng.tensor([batch, cx] + size), cond = rng.tensor([batch, cc] + size)
            let condBefore = cond.scalars
            let times = (0..<batch).map { Float(37 + 100 * $0) }
            forEachDispatch { path in
                let what = "\(path) batch \(batch) \(size)"
                var plainTaps: [String: Tensor] = [:], preparedTaps: [String: Tensor] = [:]
                let plain = unet(x, cond: cond, timesteps: times, taps: { plainTaps[$0] = $1 })
                Unet3D.reuseConditionShare = true
                let prepared = unet.prepare(cond: cond)
                XCTAssertTrue(prepared.isPrecomputed, what)
                // Two steps on one preparation: the share is not consumed or changed by a step.
                for round in 0..<2 {
                    let out = unet(x, prepared: prepared, timesteps: times, taps: { preparedTaps[$0] = $1 })
                    assertClose(preparedTaps["init_conv"]!, plainTaps["init_conv"]!, rtol: 1e-5, atol: 1e-5, "\(what) init_conv, step \(round)")
                    XCTAssertNotEqual(preparedTaps["init_conv"]!.scalars, Tensor(zeros: plainTaps["init_conv"]!.shape).scalars, what)
                    assertClose(out, plain, rtol: 1e-4, atol: 1e-4, "\(what) output, step \(round)")
                }
                XCTAssertEqual(cond.scalars, condBefore, "\(what): preparing changed cond")
                Unet3D.reuseConditionShare = false
                let off = unet.prepare(cond: cond)
                XCTAssertFalse(off.isPrecomputed, what)
                XCTAssertEqual(unet(x, prepared: off, timesteps: times).scalars, plain.scalars, "\(what): share off is the plain step")
            }
        }
    }

    /// The samplers prepare the condition once per run: DDIM and the ancestral DDPM chain with the
    /// prepared share equal the runs that convolve [x, cond] at every step (share off), on both paths.
    func testSamplersWithPreparedConditionMatchThePlainSteps() throws {
        let noearly = try DiffusionGoldenTests.noearly.get(), early = try DiffusionGoldenTests.early.get()
        let cx = noearly.denoiser.architecture.outputChannels, cc = noearly.denoiser.architecture.inputChannels - cx
        var rng = SeededRandom(seed: 603)
        let xT = rng.tensor([1, cx, 4, 8, 8]), cond = rng.tensor([1, cc, 4, 8, 8])
        let noise = (0..<4).map { _ in rng.tensor([1, cx, 4, 8, 8]) }
        let saved = Unet3D.reuseConditionShare
        defer { Unet3D.reuseConditionShare = saved }
        forEachDispatch { path in
            var results: [[Tensor]] = []
            for reuse in [false, true] {
                Unet3D.reuseConditionShare = reuse
                results.append([noearly.sampleDDIM(xT: xT, cond: cond, steps: 3),
                                early.sampleDDPM(xT: xT, cond: cond, noise: { noise[$0] })])
            }
            // From random inputs the chains amplify float differences of ε (DDIM from t=197 divides by √ᾱ;
            // DDPM clamps x̂0), so the comparison is relative to the output's norm.
            for (i, name) in ["DDIM", "DDPM"].enumerated() {
                let a = results[1][i], e = results[0][i]
                XCTAssertEqual(a.shape, e.shape)
                let err = zip(a.scalars, e.scalars).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
                let norm = e.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                XCTAssertLessThan(err / norm, 1e-4, "\(path) \(name)")   // measured ≤ 1.1e-5; a wrong share gives O(1)
                XCTAssertGreaterThan(norm, 0, "\(path) \(name)")
            }
        }
    }

    /// The spatial linear attention's Wkᵀ built at load (`UnetAttention.cacheKeyWeightsTransposed`) gives the
    /// same floats as building it per call, on the per-frame kᵀ path (16², 8² planes) and the frame-batched
    /// one (4², 2²), and on the portable path (where no kᵀ path runs).
    func testCachedKeyWeightsTransposedGiveTheSameFloats() throws {
        let unet = try Unet3DGoldenTests.model.get()
        let cx = unet.architecture.outputChannels, cc = unet.architecture.inputChannels - cx
        var rng = SeededRandom(seed: 604)
        let x = rng.tensor([1, cx, 4, 16, 16]), cond = rng.tensor([1, cc, 4, 16, 16])
        let saved = UnetAttention.cacheKeyWeightsTransposed
        defer { UnetAttention.cacheKeyWeightsTransposed = saved }
        forEachDispatch { path in
            UnetAttention.cacheKeyWeightsTransposed = false
            let perCall = unet(x, cond: cond, timesteps: [150])
            UnetAttention.cacheKeyWeightsTransposed = true
            let cached = unet(x, cond: cond, timesteps: [150])
            XCTAssertEqual(cached.scalars, perCall.scalars, path)
        }
    }
}
