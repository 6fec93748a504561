import XCTest
import Kernels
import KernelsAVX512

/// The direct AVX-512 convolution's switches (`DirectConvolution.setVariant`: shared pad columns,
/// 12-row tiles, vector row copies) change the layout and the tiling, never the per-output sums:
/// every variant gives the same floats as the previous code (variant 0), which matches the naive
/// definition. Shapes: the Unet's (1,3,3)/(1,7,7) zero-padded convs on 24²/12²-like planes, its
/// (1,4,4) stride-2 down conv and transposed up conv, asymmetric pads, zero D padding, and the
/// VQ-GAN's replicate-padded 3³ form (which the switches must leave alone).
final class DirectConvolutionVariantTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testEveryVariantGivesTheSameFloatsAsThePreviousCode() throws {
        try XCTSkipUnless(CPUFeatures.hasAVX512F, "no AVX-512F on this CPU")
        let saved = (KernelContext.useAVX512, KernelContext.forceDirectConvolution)
        defer {
            KernelContext.useAVX512 = saved.0; KernelContext.forceDirectConvolution = saved.1
            DirectConvolution.setVariant(DirectConvolution.defaultVariant)
        }
        KernelContext.useAVX512 = true
        KernelContext.forceDirectConvolution = true
        var rng = SeededRandom(seed: 29)
        // (cin, cout, input D×H×W, kernel, stride, front pad, back pad, replicate)
        let cases: [(Int, Int, [Int], [Int], [Int], [Int], [Int], Bool)] = [
            (24, 24, [3, 24, 24], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], false),   // level 0
            (48, 24, [2, 24, 24], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], false),   // ups.3.0, final block
            (24, 48, [3, 12, 12], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], false),   // level 1
            (96, 24, [2, 12, 12], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], false),
            (17, 24, [2, 24, 24], [1, 7, 7], [1, 1, 1], [0, 3, 3], [0, 3, 3], false),   // init conv
            (24, 24, [2, 24, 24], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0, 1, 1], false),   // downsample
            (12, 36, [3, 10, 13], [1, 3, 3], [1, 1, 1], [0, 2, 2], [0, 1, 1], false),   // back < front
            (12, 24, [3, 10, 13], [1, 3, 3], [1, 1, 1], [0, 0, 0], [0, 2, 2], false),   // back > front: old pitch
            (8, 12, [5, 9, 11], [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], false),     // zero D planes
            (16, 16, [6, 10, 12], [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], true),    // VQ-GAN form
            (5, 2, [4, 12, 12], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], false),     // 1-row tile
            (6, 16, [3, 22, 23], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0, 1, 1], false),    // stride 2, odd width
            (6, 8, [6, 10, 37], [4, 4, 4], [2, 2, 2], [1, 1, 1], [1, 1, 1], true),      // VQ-GAN encoder down form
        ]
        for (cin, cout, size, k, s, front, back, replicate) in cases {
            let x = rng.tensor([1, cin] + size)
            let w = rng.tensor([cout, cin] + k, scale: 0.2)
            let bias = rng.tensor([cout])
            let pad = Padding3d(front: front, back: back, mode: replicate ? .replicate : .zero)
            let what = "cin \(cin) cout \(cout) \(size) k\(k) s\(s) pad \(front)/\(back)\(replicate ? " replicate" : "")"
            DirectConvolution.setVariant(0)
            let old = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
            assertClose(old, naiveConv3d(x, w, bias, stride: s, front: front, back: back, replicate: replicate, groups: 1),
                        rtol: 1e-4, atol: 1e-4, what)
            for v in [1, 2, 4, 8, 16, 15, 31] {
                DirectConvolution.setVariant(v)
                let y = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
                XCTAssertEqual(y.shape, old.shape, what)
                XCTAssertEqual(y.scalars, old.scalars, "variant \(v): \(what)")
            }
        }
        // Transposed (1,4,4) stride (1,2,2) padding (0,1,1): the Unet's upsample to 24² and 12².
        for (c, size) in [(24, [2, 12, 12]), (12, [3, 6, 6])] {
            let x = rng.tensor([1, c] + size)
            let w = rng.tensor([c, c, 1, 4, 4], scale: 0.2)
            let bias = rng.tensor([c])
            DirectConvolution.setVariant(0)
            let old = x.convTranspose3d(weight: w, bias: bias, stride: [1, 2, 2], padding: [0, 1, 1])
            assertClose(old, naiveConvTranspose3d(x, w, bias, stride: [1, 2, 2], padding: [0, 1, 1], outputPadding: [0, 0, 0],
                                                  groups: 1), rtol: 1e-4, atol: 1e-4, "convT \(size)")
            for v in [1, 2, 4, 8, 16, 15, 31] {
                DirectConvolution.setVariant(v)
                XCTAssertEqual(x.convTranspose3d(weight: w, bias: bias, stride: [1, 2, 2], padding: [0, 1, 1]).scalars,
                               old.scalars, "convT variant \(v) \(size)")
            }
        }
    }

    /// The Unet's convolutions of channel concatenations read both inputs in place (`concatFreeSkips`):
    /// the fixture Unet (16² planes: its init conv, ups.2, ups.3 and final ResnetBlocks take the direct
    /// kernels) gives the same output as with the concatenations built, on both kernel paths.
    func testConcatFreeSkipsMatchTheConcatenation() throws {
        let unet = try Unet3DGoldenTests.model.get()
        var rng = SeededRandom(seed: 41)
        let x = rng.tensor([1, 8, 8, 16, 16]), cond = rng.tensor([1, unet.architecture.inputChannels - 8, 8, 16, 16])
        let saved = (Unet3D.concatFreeSkips, KernelContext.useAVX512, Unet3D.fusedResnet)
        defer { (Unet3D.concatFreeSkips, KernelContext.useAVX512, Unet3D.fusedResnet) = saved }
        Unet3D.fusedResnet = 0   // the session-5 switch alone (the fused blocks read their skips in place too)
        for avx in CPUFeatures.hasAVX512F ? [false, true] : [false] {
            KernelContext.useAVX512 = avx
            Unet3D.concatFreeSkips = false
            let calls0 = Unet3D.concatFreeConvolutions
            let before = unet(x, cond: cond, timesteps: [37])
            XCTAssertEqual(Unet3D.concatFreeConvolutions, calls0, "switch off: no concat-free convolution")
            Unet3D.concatFreeSkips = true
            let after = unet(x, cond: cond, timesteps: [37])
            // init conv + ups.2.0 + ups.3.0 + final block on the direct path; none on the portable path.
            XCTAssertEqual(Unet3D.concatFreeConvolutions - calls0, avx ? 4 : 0, "avx512 \(avx): concat-free convolutions")
            assertClose(after, before, rtol: 1e-4, atol: 1e-5, "avx512 \(avx)")
        }
    }
}
