import COpenBLAS
import Foundation

/// `SamePadConv3d` of the reference: replicate-pad a total of k−s per axis (front = ceil), then conv.
public struct SamePadConv3d {
    public let weight: Tensor
    public let bias: Tensor
    public let stride: Int

    init(_ sd: StateDict, _ prefix: String, cin: Int, cout: Int, kernel: Int, stride: Int = 1) throws {
        weight = try sd.tensor(prefix + "conv.weight", shape: [cout, cin, kernel, kernel, kernel])
        bias = try sd.tensor(prefix + "conv.bias", shape: [cout])
        self.stride = stride
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let k = weight.shape[2], p = k - stride
        let front = (p + 1) / 2, back = p / 2
        // The Kernels convolution (tap-stacked lowering) with the reference's replicate padding.
        return x.conv3d(weight: weight, bias: bias, stride: [stride, stride, stride],
                        padding: Padding3d(front: [front, front, front], back: [back, back, back], mode: .replicate))
    }
}

/// `SamePadConvTranspose3d`: replicate-pad 1 on each side, then ConvTranspose3d(k=4, s=2, padding=3).
public struct SamePadConvTranspose3d {
    public let weight: Tensor
    public let bias: Tensor

    init(_ sd: StateDict, _ prefix: String, cin: Int, cout: Int) throws {
        weight = try sd.tensor(prefix + "convt.weight", shape: [cin, cout, 4, 4, 4])
        bias = try sd.tensor(prefix + "convt.bias", shape: [cout])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let padded = NetworkOps.replicatePad(x, front: [1, 1, 1], back: [1, 1, 1])
        return NetworkOps.convTranspose3d(padded, weight: weight, bias: bias, stride: [2, 2, 2], padding: [3, 3, 3])
    }
}

/// GroupNorm(32, eps 1e-6) with affine weights, as `Normalize` in the reference.
public struct GroupNorm32 {
    public let weight: Tensor
    public let bias: Tensor
    init(_ sd: StateDict, _ prefix: String, channels: Int) throws {
        weight = try sd.tensor(prefix + "weight", shape: [channels])
        bias = try sd.tensor(prefix + "bias", shape: [channels])
    }
    func apply(_ x: inout Tensor, silu: Bool) {
        NetworkOps.groupNorm(&x, groups: 32, eps: 1e-6, weight: weight, bias: bias, silu: silu)
    }
}

/// `ResBlock(c)`: x + conv2(SiLU(GN2(conv1(SiLU(GN1(x)))))).
public struct VQResBlock {
    let norm1: GroupNorm32, conv1: SamePadConv3d, norm2: GroupNorm32, conv2: SamePadConv3d
    init(_ sd: StateDict, _ prefix: String, channels c: Int) throws {
        norm1 = try GroupNorm32(sd, prefix + "norm1.", channels: c)
        conv1 = try SamePadConv3d(sd, prefix + "conv1.", cin: c, cout: c, kernel: 3)
        norm2 = try GroupNorm32(sd, prefix + "norm2.", channels: c)
        conv2 = try SamePadConv3d(sd, prefix + "conv2.", cin: c, cout: c, kernel: 3)
    }
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        norm1.apply(&h, silu: true)
        h = conv1(h)
        norm2.apply(&h, silu: true)
        h = conv2(h)
        NetworkOps.add(&h, x)
        return h
    }
}

/// The 3D VQ-GAN of DiffTumor (inference parts: encoder, pre/post VQ convs, codebook, decoder).
/// Module names follow the reference state dict; the architecture is inferred from shapes.
public final class VQGAN3D {
    public struct Architecture: CustomStringConvertible, Sendable {
        public var imageChannels: Int
        public var hiddens: Int
        public var levels: Int
        public var embeddingDim: Int
        public var codes: Int
        public var description: String {
            "VQGAN3D(image_channels=\(imageChannels), n_hiddens=\(hiddens), downsample=\(1 << levels)x, embedding_dim=\(embeddingDim), n_codes=\(codes))"
        }
    }

    public let architecture: Architecture
    let convFirst: SamePadConv3d
    let encDown: [SamePadConv3d]
    let encRes: [VQResBlock]
    let encFinal: GroupNorm32
    let preVQ: SamePadConv3d
    let postVQ: SamePadConv3d
    let decFinal: GroupNorm32
    let decUp: [SamePadConvTranspose3d]
    let decRes1: [VQResBlock]
    let decRes2: [VQResBlock]
    let convLast: SamePadConv3d
    /// Codebook (codes, dim), its squared norms, and its scalar min/max (latent normalisation).
    public let codebook: Tensor
    let codebookNorms: [Float]
    public let codebookMin: Float
    public let codebookMax: Float

    /// Infers the architecture from the tensor shapes of a VQ-GAN state dict.
    public static func inferArchitecture(_ sd: StateDict) throws -> Architecture {
        func shape(_ k: String) throws -> [Int] {
            guard let s = sd.shape(k) else { throw WeightsError(.missingKey, file: sd.file, "no tensor '\(k)' (VQ-GAN)") }
            return s
        }
        let first = try shape("encoder.conv_first.conv.weight")
        guard first.count == 5 else { throw WeightsError(.shapeMismatch, file: sd.file, "encoder.conv_first.conv.weight is \(first)") }
        var levels = 0
        while sd.contains("encoder.conv_blocks.\(levels).down.conv.weight") { levels += 1 }
        guard levels > 0 else { throw WeightsError(.architecture, file: sd.file, "no encoder.conv_blocks.*") }
        let cb = try shape("codebook.embeddings")
        guard cb.count == 2 else { throw WeightsError(.shapeMismatch, file: sd.file, "codebook.embeddings is \(cb)") }
        return Architecture(imageChannels: first[1], hiddens: first[0], levels: levels, embeddingDim: cb[1], codes: cb[0])
    }

    /// Loads from a state dict with the reference names (Lightning `state_dict`, or a diffusion
    /// checkpoint's `vqgan.` subtree). Discriminator/perceptual keys are ignored.
    public init(stateDict sd: StateDict) throws {
        let a = try VQGAN3D.inferArchitecture(sd)
        architecture = a
        let n = a.hiddens
        convFirst = try SamePadConv3d(sd, "encoder.conv_first.", cin: a.imageChannels, cout: n, kernel: 3)
        var down: [SamePadConv3d] = [], res: [VQResBlock] = []
        for i in 0..<a.levels {
            let cin = n << i, cout = n << (i + 1)
            down.append(try SamePadConv3d(sd, "encoder.conv_blocks.\(i).down.", cin: cin, cout: cout, kernel: 4, stride: 2))
            res.append(try VQResBlock(sd, "encoder.conv_blocks.\(i).res.", channels: cout))
        }
        encDown = down; encRes = res
        let top = n << a.levels
        encFinal = try GroupNorm32(sd, "encoder.final_block.0.", channels: top)
        preVQ = try SamePadConv3d(sd, "pre_vq_conv.", cin: top, cout: a.embeddingDim, kernel: 1)
        postVQ = try SamePadConv3d(sd, "post_vq_conv.", cin: a.embeddingDim, cout: top, kernel: 1)
        decFinal = try GroupNorm32(sd, "decoder.final_block.0.", channels: top)
        var up: [SamePadConvTranspose3d] = [], r1: [VQResBlock] = [], r2: [VQResBlock] = []
        for i in 0..<a.levels {
            let cin = i == 0 ? top : n << (a.levels - i + 1)
            let cout = n << (a.levels - i)
            up.append(try SamePadConvTranspose3d(sd, "decoder.conv_blocks.\(i).up.", cin: cin, cout: cout))
            r1.append(try VQResBlock(sd, "decoder.conv_blocks.\(i).res1.", channels: cout))
            r2.append(try VQResBlock(sd, "decoder.conv_blocks.\(i).res2.", channels: cout))
        }
        decUp = up; decRes1 = r1; decRes2 = r2
        convLast = try SamePadConv3d(sd, "decoder.conv_last.", cin: n << 1, cout: a.imageChannels, kernel: 3)
        codebook = try sd.tensor("codebook.embeddings", shape: [a.codes, a.embeddingDim])
        let cbv = codebook.scalars
        codebookMin = cbv.min() ?? 0
        codebookMax = cbv.max() ?? 0
        var norms = [Float](repeating: 0, count: a.codes)
        for c in 0..<a.codes {
            var s: Float = 0
            for d in 0..<a.embeddingDim { s += cbv[c * a.embeddingDim + d] * cbv[c * a.embeddingDim + d] }
            norms[c] = s
        }
        codebookNorms = norms
    }

    /// Intermediate activations of the encoder, for golden checks (names as in golden.safetensors).
    public typealias Taps = (String, Tensor) -> Void

    /// The unquantised latent `pre_vq_conv(encoder(x))`, x (B, C, D, H, W) with sides divisible by 2^levels.
    public func encode(_ x: Tensor, taps: Taps? = nil) -> Tensor {
        precondition(x.rank == 5 && x.shape[1] == architecture.imageChannels, "VQGAN encode: input \(x.shape)")
        var h = convFirst(x)
        taps?("conv_first", h)
        for i in 0..<encDown.count {
            h = encDown[i](h)
            taps?("block\(i).down", h)
            h = encRes[i](h)
            taps?("block\(i).res", h)
        }
        encFinal.apply(&h, silu: true)
        taps?("final_block", h)
        return preVQ(h)
    }

    /// Nearest codebook entry of each latent vector: argmin ‖z‖² − 2 z·e + ‖e‖², one GEMM per row block.
    /// Returns indices (B, D, H, W) as Int32.
    public func quantize(_ z: Tensor) -> [Int32] {
        let B = z.shape[0], C = z.shape[1], S = z.count / (B * C)
        precondition(C == architecture.embeddingDim, "quantize: latent \(z.shape) for embedding dim \(architecture.embeddingDim)")
        let codes = architecture.codes
        var indices = [Int32](repeating: 0, count: B * S)
        // Rows (b, s) as vectors of C: gather to (N, C).
        var flat = [Float](repeating: 0, count: B * S * C)
        z.withUnsafeBufferPointer { zp in
            for b in 0..<B { for c in 0..<C { for s in 0..<S { flat[(b * S + s) * C + c] = zp[(b * C + c) * S + s] } } }
        }
        let rowsPerBlock = 256
        let blocks = (B * S + rowsPerBlock - 1) / rowsPerBlock
        flat.withUnsafeBufferPointer { fp in
            codebook.withUnsafeBufferPointer { ep in
                codebookNorms.withUnsafeBufferPointer { nb in
                indices.withUnsafeMutableBufferPointer { ip in
                    let ipBase = ip.baseAddress!
                    NetworkOps.parallelFor(blocks) { range in
                        var dots = [Float](repeating: 0, count: rowsPerBlock * codes)
                        for blk in range {
                            let r0 = blk * rowsPerBlock, nr = min(rowsPerBlock, B * S - r0)
                            dots.withUnsafeMutableBufferPointer { dp in
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nr), Int32(codes), Int32(C), 1,
                                            fp.baseAddress! + r0 * C, Int32(C), ep.baseAddress!, Int32(C), 0, dp.baseAddress!, Int32(codes))
                                for r in 0..<nr {
                                    var zz: Float = 0
                                    for c in 0..<C { zz += fp[(r0 + r) * C + c] * fp[(r0 + r) * C + c] }
                                    let row = UnsafeRawPointer(dp.baseAddress! + r * codes)
                                    let norms = UnsafeRawPointer(nb.baseAddress!)
                                    // argmin of (‖z‖² − 2 z·e) + ‖e‖², first index on ties, 8 lanes at a time.
                                    var bestV = SIMD8<Float>(repeating: .infinity)
                                    var bestI = SIMD8<Int32>(repeating: 0)
                                    var lane = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
                                    var k = 0
                                    while k + 8 <= codes {
                                        let d = (zz - 2 * row.loadUnaligned(fromByteOffset: 4 * k, as: SIMD8<Float>.self))
                                            + norms.loadUnaligned(fromByteOffset: 4 * k, as: SIMD8<Float>.self)
                                        let better = d .< bestV
                                        bestV.replace(with: d, where: better)
                                        bestI.replace(with: lane, where: better)
                                        lane &+= 8
                                        k += 8
                                    }
                                    var best = Float.infinity, bi = Int.max
                                    for l in 0..<8 where bestV[l] < best || (bestV[l] == best && Int(bestI[l]) < bi) {
                                        best = bestV[l]; bi = Int(bestI[l])
                                    }
                                    while k < codes {
                                        let d = (zz - 2 * row.load(fromByteOffset: 4 * k, as: Float.self)) + norms.load(fromByteOffset: 4 * k, as: Float.self)
                                        if d < best { best = d; bi = k }
                                        k += 1
                                    }
                                    ipBase[r0 + r] = Int32(bi)
                                }
                            }
                        }
                    }
                }
                }
            }
        }
        return indices
    }

    /// Codebook vectors for indices, as a latent (B, C, D, H, W).
    public func embed(_ indices: [Int32], shape: [Int]) -> Tensor {
        let B = shape[0], S = shape.dropFirst().reduce(1, *), C = architecture.embeddingDim
        precondition(indices.count == B * S, "embed: \(indices.count) indices for \(shape)")
        var out = Tensor(uninitialized: [B, C] + Array(shape.dropFirst()))
        let cb = codebook.scalars
        out.withUnsafeMutableBufferPointer { op in
            for b in 0..<B { for s in 0..<S {
                let k = Int(indices[b * S + s])
                for c in 0..<C { op[(b * C + c) * S + s] = cb[k * C + c] }
            } }
        }
        return out
    }

    /// decode(z, quantize: true) of the reference: snap to the codebook, post_vq_conv, decoder.
    public func decode(_ z: Tensor, quantize: Bool = true, taps: Taps? = nil) -> Tensor {
        let latent: Tensor
        if quantize {
            let idx = self.quantize(z)
            latent = embed(idx, shape: [z.shape[0]] + Array(z.shape.dropFirst(2)))
        } else {
            latent = z
        }
        var h = postVQ(latent)
        taps?("post_vq_conv", h)
        decFinal.apply(&h, silu: true)
        taps?("final_block", h)
        for i in 0..<decUp.count {
            h = decUp[i](h)
            taps?("block\(i).up", h)
            h = decRes1[i](h)
            taps?("block\(i).res1", h)
            h = decRes2[i](h)
            taps?("block\(i).res2", h)
        }
        return convLast(h)
    }
}
