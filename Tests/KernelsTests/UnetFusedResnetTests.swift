import Foundation
import XCTest
import Kernels
import KernelsAVX512

/// Session 6: the fused ResnetBlock path (`Unet3D.fusedResnet`) against the separate passes it replaces:
/// the direct convolution's statistics epilogue, the one-pass GroupNorm + SiLU + residual
/// (identity or 1×1 res_conv, on one input or a skip concatenation), and whole Unet steps with every
/// combination of the switches, on the AVX-512 path (the portable path keeps the old code: checked equal).
final class UnetFusedResnetTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    private func withAVX512(_ body: () throws -> Void) throws {
        try XCTSkipUnless(CPUFeatures.hasAVX512F, "no AVX-512F on this CPU")
        let saved = (KernelContext.useAVX512, KernelContext.forceDirectConvolution)
        defer { (KernelContext.useAVX512, KernelContext.forceDirectConvolution) = saved }
        KernelContext.useAVX512 = true
        KernelContext.forceDirectConvolution = true
        try body()
    }

    /// SiLU(x·a + o) elementwise with Foundation's exp (the reference for the fused affine).
    private func activated(_ x: Tensor, a: [Float], o: [Float]) -> Tensor {
        let (b, c) = (x.shape[0], x.shape[1]), s = x.count / (b * c)
        var v = x.scalars
        for bc in 0..<(b * c) { for j in 0..<s {
            let t = v[bc * s + j] * a[bc] + o[bc]
            v[bc * s + j] = t / (1 + Foundation.exp(-t))
        }}
        return Tensor(shape: x.shape, data: v)
    }

    /// `DirectConvolution.Fusion`: the per-plane statistics give the group statistics of the separate read
    /// pass and leave the output unchanged. (1,3,3) zero-padded convs like the Unet's (24² and 12² planes,
    /// a concatenated input, odd sizes).
    func testConvolutionFusionMatchesSeparatePasses() throws {
        try withAVX512 {
            var rng = SeededRandom(seed: 601)
            // (c1, c2 (second input), cout, D, H, W)
            for (c1, c2, cout, d, h, w) in [(24, 0, 24, 3, 24, 24), (24, 24, 24, 2, 24, 24), (48, 0, 48, 3, 12, 12),
                                            (13, 3, 16, 2, 5, 7), (8, 0, 8, 1, 20, 3)] {
                let cin = c1 + c2
                let x1 = rng.tensor([1, c1, d, h, w], scale: 2)
                let x2 = c2 > 0 ? rng.tensor([1, c2, d, h, w], scale: 2) : nil
                let x = x2.map { Tensor.concat([x1, $0], axis: 1) } ?? x1
                let weight = rng.tensor([cout, cin, 1, 3, 3], scale: 0.3), bias = rng.tensor([cout])
                let pad = Padding3d(front: [0, 1, 1], back: [0, 1, 1], mode: .zero)
                let plain = x.conv3d(weight: weight, bias: bias, padding: pad)
                func fused(_ fusion: DirectConvolution.Fusion) -> Tensor {
                    var y = Tensor(uninitialized: [1, cout, d, h, w])
                    x1.withUnsafeBufferPointer { b1 in weight.withUnsafeBufferPointer { wb in bias.withUnsafeBufferPointer { bb in
                    y.withUnsafeMutableBufferPointer { yb in
                        let (p1, wp, bp, yp) = (b1.baseAddress!, wb.baseAddress!, bb.baseAddress!, yb.baseAddress!)
                        let p2 = x2?.withUnsafeBufferPointer { $0.baseAddress! }   // x2 outlives the call
                        DirectConvolution.conv3d(input: p1, channels: cin, inputDims: (d, h, w), weight: wp, outChannels: cout,
                                                 kernel: (1, 3, 3), stride: (1, 1, 1), front: (0, 1, 1), replicate: false, bias: bp,
                                                 output: yp, outputDims: (d, h, w), threads: 2, secondInput: p2, firstChannels: c1,
                                                 fusion: fusion)
                    }}}}
                    return y
                }
                var moments = [Float](repeating: .nan, count: 2 * cout * d)
                let withStats = moments.withUnsafeMutableBufferPointer { fused(DirectConvolution.Fusion(statistics: $0.baseAddress!)) }
                XCTAssertEqual(withStats.scalars, plain.scalars, "\(cin)→\(cout) \(d)×\(h)×\(w): statistics changed the output")
                let groups = 8
                let gathered = moments.withUnsafeBufferPointer {
                    NetworkOps.groupStatistics(planeMoments: $0.baseAddress!, images: 1, channels: cout, planes: d, planeSize: h * w,
                                               groups: groups)
                }
                let read = NetworkOps.groupStatistics(plain, groups: groups)
                for g in 0..<groups {
                    XCTAssertEqual(gathered.mean[g], read.mean[g], accuracy: 1e-6 * (1 + abs(read.mean[g])), "mean \(g) \(cin)→\(cout)")
                    XCTAssertEqual(gathered.variance[g], read.variance[g], accuracy: 1e-5 * read.variance[g], "variance \(g) \(cin)→\(cout)")
                }
            }
        }
    }

    /// `NetworkOps.normalizeAddResidual` (one pass, in place) equals the separate GroupNorm-affine + SiLU and
    /// residual: the identity, a 1×1 res_conv of one input (channel counts not multiples of 12), of a
    /// concatenation; widths that are and are not multiples of 32; a batch of 2.
    func testOnePassNormAndResidualMatchesSeparatePasses() throws {
        try withAVX512 {
            var rng = SeededRandom(seed: 602)
            // (batch, c1, c2, cout, spatial, res_conv)
            for (n, c1, c2, cout, spatial, res) in [(1, 24, 0, 24, [2, 24, 24], false), (2, 16, 0, 16, [3, 5, 7], false),
                                                   (1, 24, 24, 24, [2, 24, 24], true), (2, 20, 0, 30, [3, 5, 7], true),
                                                   (1, 96, 96, 96, [2, 6, 6], true), (1, 48, 0, 96, [1, 3, 3], true)] {
                let x1 = rng.tensor([n, c1] + spatial), x2 = c2 > 0 ? rng.tensor([n, c2] + spatial) : nil
                let h = rng.tensor([n, cout] + spatial, scale: 3)
                let a = (0..<(n * cout)).map { _ in 0.5 + rng.uniform() }, o = (0..<(n * cout)).map { _ in rng.uniform() }
                var expected = activated(h, a: a, o: o)
                var out = h
                if res {
                    let cin = c1 + c2
                    let w = rng.tensor([cout, cin, 1, 1, 1], scale: 0.3), bias = rng.tensor([cout])
                    let x = x2.map { Tensor.concat([x1, $0], axis: 1) } ?? x1
                    expected.add(x.conv3d(weight: w, bias: bias))
                    let packed = w.withUnsafeBufferPointer { ResidualEpilogueAVX512.packWeight($0.baseAddress!, rows: cout, cols: cin) }
                    NetworkOps.normalizeAddResidual(&out, a: a, o: o, silu: true, identity: nil, packedWeight: packed, bias: bias,
                                                    x1: x1, x2: x2)
                } else {
                    expected.add(x1)
                    NetworkOps.normalizeAddResidual(&out, a: a, o: o, silu: true, identity: x1, packedWeight: nil, bias: nil,
                                                    x1: x1, x2: nil)
                }
                assertClose(out, expected, rtol: 1e-4, atol: 1e-4, "n \(n) \(c1)+\(c2)→\(cout) \(spatial) res_conv \(res)")
            }
        }
    }

    /// Whole Unet steps on the fixture's Unet (every level on the direct kernels, so every block takes the
    /// fused path; then the default shape rules): every switch combination equals the previous code within
    /// float reassociation, leaves the inputs alone, and the phase-timed path gives the same floats. The
    /// portable path ignores the switches (the same floats as 0).
    func testUnetStepWithFusedBlocksMatchesPreviousCode() throws {
        let unet = try Unet3DGoldenTests.model.get()
        var rng = SeededRandom(seed: 603)
        let x = rng.tensor([2, 8, 8, 16, 16]), cond = rng.tensor([2, unet.architecture.inputChannels - 8, 8, 16, 16])
        let xBefore = x.scalars, condBefore = cond.scalars
        let saved = (Unet3D.fusedResnet, KernelContext.useAVX512, KernelContext.forceDirectConvolution)
        defer { (Unet3D.fusedResnet, KernelContext.useAVX512, KernelContext.forceDirectConvolution) = saved; Unet3D.phaseTap = nil }
        KernelContext.useAVX512 = false
        Unet3D.fusedResnet = 0
        let portable = unet(x, cond: cond, timesteps: [37, 150])
        Unet3D.fusedResnet = 13
        XCTAssertEqual(unet(x, cond: cond, timesteps: [37, 150]).scalars, portable.scalars, "portable path: the switches change nothing")
        guard CPUFeatures.hasAVX512F else { return }
        KernelContext.useAVX512 = true
        for force in [true, false] {
            KernelContext.forceDirectConvolution = force
            Unet3D.fusedResnet = 0
            let before = unet(x, cond: cond, timesteps: [37, 150])
            for bits in [1, 4, 9, 12, 5, 13] {
                Unet3D.fusedResnet = bits
                let fusedBefore = Unet3D.fusedBlocks
                let after = unet(x, cond: cond, timesteps: [37, 150])
                if force { XCTAssertEqual(Unet3D.fusedBlocks - fusedBefore, 19, "fusedResnet \(bits): every ResnetBlock fused") }
                assertClose(after, before, rtol: 1e-4, atol: 1e-4, "fusedResnet \(bits), forced direct \(force)")
                XCTAssertEqual(x.scalars, xBefore, "fusedResnet \(bits): the step changed its input x")
                XCTAssertEqual(cond.scalars, condBefore, "fusedResnet \(bits): the step changed its input cond")
            }
            Unet3D.fusedResnet = 13
            let plain = unet(x, cond: cond, timesteps: [37, 150])
            var names = Set<String>()
            Unet3D.phaseTap = { names.insert($0) }
            let tapped = unet(x, cond: cond, timesteps: [37, 150])
            Unet3D.phaseTap = nil
            XCTAssertEqual(tapped.scalars, plain.scalars, "phase-timed fused path, forced direct \(force)")
            if force { XCTAssertTrue(["conv1", "norm1", "conv2", "norm2+add"].allSatisfy(names.contains), "\(names)") }
        }
        assertClose(portable, unet(x, cond: cond, timesteps: [37, 150]), rtol: 1e-4, atol: 1e-4, "AVX-512 fused vs portable")
    }
}
