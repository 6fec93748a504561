import Foundation
import XCTest
import Kernels

/// Real-size checks (96³ patch, 8×24³ latent), run in release: the networks' fast ops against the
/// independent `Kernels` ops (themselves tested against naive loops) at every convolution shape
/// whose tiling differs from the 16³ goldens, attention over 24 frames against a Float64 evaluation,
/// and whole-network consistency at the real size.
final class ModelsRealSizeTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var g = GaussianNoise(seed: seed)
        var t = g.tensor(shape)
        t.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= scale } }
        return t
    }

    func testConvolutionsAtRealShapesAgreeWithKernelsOps() {
        // (input shape, weight shape, stride, front, back, mode): shapes of the VQ-GAN and Unet3D at real size.
        let cases: [([Int], [Int], [Int], [Int], [Int], ConvPadding)] = [
            ([1, 1, 96, 96, 96], [16, 1, 3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], .replicate),    // conv_first
            ([1, 16, 96, 96, 96], [32, 16, 4, 4, 4], [2, 2, 2], [1, 1, 1], [1, 1, 1], .replicate),  // down 0
            ([1, 64, 24, 24, 24], [64, 64, 3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], .replicate),  // ResBlock(64), 3 slabs
            ([1, 17, 24, 24, 24], [24, 17, 1, 7, 7], [1, 1, 1], [0, 3, 3], [0, 3, 3], .zeros),       // init_conv
            ([1, 24, 24, 24, 24], [24, 24, 1, 4, 4], [1, 2, 2], [0, 1, 1], [0, 1, 1], .zeros),       // Downsample
            ([1, 384, 24, 6, 6], [96, 384, 1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], .zeros),       // ups.0 block1
        ]
        for (i, (xs, ws, s, f, b, mode)) in cases.enumerated() {
            let x = random(xs, seed: UInt64(10 + i)), w = random(ws, seed: UInt64(20 + i), scale: 0.1), bias = random([ws[0]], seed: UInt64(30 + i))
            let fast = NetworkOps.conv3d(x, weight: w, bias: bias, stride: s, padFront: f, padBack: b, mode: mode)
            let ref = x.conv3d(weight: w, bias: bias, stride: s, padding: Padding3d(front: f, back: b, mode: mode == .zeros ? .zero : .replicate))
            assertClose(fast, ref, rel: 1e-5, "conv \(ws) on \(xs)")
        }
        // Transposed convolutions: decoder up 0 (replicate-padded 26³, 2 slabs) and the UNet Upsample.
        let tcases: [([Int], [Int], [Int], [Int])] = [
            ([1, 64, 26, 26, 26], [64, 64, 4, 4, 4], [2, 2, 2], [3, 3, 3]),
            ([1, 48, 24, 6, 6], [48, 48, 1, 4, 4], [1, 2, 2], [0, 1, 1]),
        ]
        for (i, (xs, ws, s, p)) in tcases.enumerated() {
            let x = random(xs, seed: UInt64(40 + i)), w = random(ws, seed: UInt64(50 + i), scale: 0.1), bias = random([ws[1]], seed: UInt64(60 + i))
            let fast = NetworkOps.convTranspose3d(x, weight: w, bias: bias, stride: s, padding: p)
            let ref = x.convTranspose3d(weight: w, bias: bias, stride: s, padding: p)
            assertClose(fast, ref, rel: 1e-5, "convT \(ws) on \(xs)")
        }
    }

    func testGroupNormAndLayerNormAtRealSize() {
        let x = random([1, 32, 96, 96, 96], seed: 3)
        let w = random([32], seed: 4), b = random([32], seed: 5)
        var fast = x
        NetworkOps.groupNorm(&fast, groups: 32, eps: 1e-6, weight: w, bias: b, silu: true)
        assertClose(fast, x.groupNorm(groups: 32, weight: w, bias: b, eps: 1e-6).silu(), rel: 1e-5, "GroupNorm+SiLU 32×96³")
        let y = random([1, 24, 24, 24, 24], seed: 6), g = random([24], seed: 7)
        assertClose(NetworkOps.channelLayerNorm(y, gamma: g), y.channelLayerNorm(gain: g.reshaped([24])), rel: 1e-5, "channel LayerNorm")
    }

    /// Temporal attention over 24 frames (relative-position buckets up to distance 23 and rotary
    /// positions up to 23, neither reached by the 16-frame goldens) against Float64.
    func testTemporalAttentionOver24FramesAgainstFloat64() throws {
        let (T, heads, dh, groups) = (24, 8, 32, 5)
        let hidden = heads * dh
        let qkv = random([groups * T, 3 * hidden], seed: 9)
        let table = random([32, heads], seed: 10)
        let freqs = (0..<16).map { Float(1 / pow(10000.0, Double(2 * $0) / 32)) * 1.1 }
        let bias = AttentionOps.relativePositionBias(table: table, tokens: T, maxDistance: 32)
        var out = [Float](repeating: 0, count: groups * T * hidden)
        qkv.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                AttentionOps.softmaxAttention(qkvT: q.baseAddress!, out: o.baseAddress!, groups: groups, tokens: T, groupStride: 1,
                                              tokenStride: groups, heads: heads, dimHead: dh,
                                              rotary: AttentionOps.Rotary(freqs: freqs, positions: T), bias: bias)
            }
        }
        let qv = qkv.scalars, tv = table.scalars
        var ref = [Float](repeating: 0, count: out.count)
        let scale = 1 / Double(dh).squareRoot()
        for g in 0..<groups {
            for h in 0..<heads {
                func vec(_ t: Int, _ part: Int, rotate: Bool) -> [Double] {
                    let row = (g + t * groups) * 3 * hidden + part * hidden + h * dh
                    var v = (0..<dh).map { Double(qv[row + $0]) }
                    if part == 0 { v = v.map { $0 * scale } }
                    if rotate {
                        var r = v
                        for i in 0..<16 {
                            let a = Double(t) * Double(freqs[i])
                            r[2 * i] = v[2 * i] * cos(a) - v[2 * i + 1] * sin(a)
                            r[2 * i + 1] = v[2 * i + 1] * cos(a) + v[2 * i] * sin(a)
                        }
                        v = r
                    }
                    return v
                }
                for i in 0..<T {
                    let q = vec(i, 0, rotate: true)
                    var sims = (0..<T).map { j -> Double in
                        let k = vec(j, 1, rotate: true)
                        let bucket = AttentionOps.relativePositionBucket(j - i, numBuckets: 32, maxDistance: 32)
                        return zip(q, k).map { $0 * $1 }.reduce(0, +) + Double(tv[bucket * heads + h])
                    }
                    let m = sims.max()!
                    sims = sims.map { exp($0 - m) }
                    let s = sims.reduce(0, +)
                    for d in 0..<dh {
                        var acc = 0.0
                        for j in 0..<T { acc += sims[j] / s * vec(j, 2, rotate: false)[d] }
                        ref[(g + i * groups) * hidden + h * dh + d] = Float(acc)
                    }
                }
            }
        }
        assertClose(Tensor(shape: [out.count], data: out), Tensor(shape: [ref.count], data: ref), rel: 1e-5, "temporal attention, 24 frames")
    }

    /// Condition, one denoiser step and the codebook snap at 96³ / 24³ with the fixture weights: shapes,
    /// finiteness, the mask downsampling, and the snap's self-consistency
    /// (a latent made of codebook vectors snaps back to the same codes).
    func testWholeChainAtRealSize() throws {
        let vq = try VQGAN3D(stateDict: try TorchCheckpoint(path: Fixtures.difftumor("autoencoder.ckpt")).modelStateDict())
        let early = try GaussianDiffusion(path: Fixtures.difftumor("diffusion_early.pt"))
        let engine = DiffTumorEngine(autoencoder: vq, early: early, noearly: nil)
        var ct = random([1, 1, 96, 96, 96], seed: 11, scale: 0.1)
        ct.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = min(max(p[i] + 0.5, 0), 1) } }
        var mask = Tensor(zeros: [1, 1, 96, 96, 96])
        mask.withUnsafeMutableBufferPointer { p in for x in 30..<50 { for y in 40..<60 { for z in 44..<52 { p[(x * 96 + y) * 96 + z] = 1 } } } }
        let cond = engine.condition(ct: ct, mask: mask)
        XCTAssertEqual(cond.shape, [1, 9, 24, 24, 24])
        // The mask channel is the nearest sample at voxels 0, 4, …, 92 of 2m − 1, in (Z, X, Y) order.
        let c8 = cond.scalars[(8 * 24 * 24 * 24)...]
        XCTAssertEqual(c8[c8.startIndex + (12 * 24 + 8) * 24 + 11], 1)   // z=48, x=32, y=44 inside
        XCTAssertEqual(c8[c8.startIndex + (12 * 24 + 13) * 24 + 11], -1) // x=52 outside
        // One denoiser step at the real size (the decoder's real-size shapes are covered op by op above).
        var noise = GaussianNoise(seed: 5)
        let latent = early.ddpmStep(noise.tensor([1, 8, 24, 24, 24]), cond: cond, t: 3, noise: noise.tensor([1, 8, 24, 24, 24]))
        XCTAssertEqual(latent.shape, [1, 8, 24, 24, 24])
        XCTAssertTrue(latent.scalars.allSatisfy { $0.isFinite })
        // Snap consistency over all 13,824 latent positions.
        let idx = vq.quantize(vq.encode(DiffTumorLayout.toNetwork(ct)))
        let again = vq.quantize(vq.embed(idx, shape: [1, 24, 24, 24]))
        XCTAssertEqual(again, idx)
    }
}

/// The worker-GEMM mode (OpenBLAS single-threaded, GEMMs and im2col split across the op workers)
/// against the goldens: the VQ-GAN round trip and the UNet at t=2.
final class ModelsWorkerModeTests: XCTestCase {
    func testWorkerGEMMModeMatchesGoldens() throws {
        let saved = (BLASThreads.count, NetworkOps.threads)
        BLASThreads.count = 1
        NetworkOps.threads = 2
        defer { BLASThreads.count = saved.0; NetworkOps.threads = saved.1 }
        let g = try Fixtures.golden
        let vq = try VQGAN3D(stateDict: try TorchCheckpoint(path: Fixtures.difftumor("autoencoder.ckpt")).modelStateDict())
        assertClose(vq.encode(try g.tensor("vqgan.encode.input")), try g.tensor("vqgan.encode.output"), rel: 1e-5, "encode (workers)")
        assertClose(vq.decode(try g.tensor("vqgan.encode.output")), try g.tensor("vqgan.decode.output"), rel: 1e-4, "decode (workers)")
        let ema = try TorchCheckpoint(path: Fixtures.difftumor("diffusion_noearly.pt")).modelStateDict()
        let unet = try Unet3D(stateDict: ema.subdict(prefix: "denoise_fn."))
        let out = unet(try g.tensor("unet.input.x"), cond: try g.tensor("unet.input.cond"), timesteps: [2])
        assertClose(out, try g.tensor("unet.output.t2"), rel: 1e-4, "unet t2 (workers)")
        // A real-size convolution with several slabs per worker against the Kernels op.
        var rng = GaussianNoise(seed: 1)
        let x = rng.tensor([1, 64, 24, 24, 24]), w = rng.tensor([64, 64, 3, 3, 3])
        let fast = NetworkOps.conv3d(x, weight: w, bias: nil, padFront: [1, 1, 1], mode: .replicate)
        assertClose(fast, x.conv3d(weight: w, padding: Padding3d(front: [1, 1, 1], back: [1, 1, 1], mode: .replicate)), rel: 1e-5, "conv (workers)")
    }
}
