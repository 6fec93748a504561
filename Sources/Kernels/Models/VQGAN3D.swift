import COpenBLAS
import Foundation
import KernelsAVX512

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
        x.padded(.uniform(1, mode: .replicate)).convTranspose3d(weight: weight, bias: bias, stride: [2, 2, 2], padding: [3, 3, 3])
    }
}

/// GroupNorm(32, eps 1e-6) with affine weights, as `Normalize` in the reference, always followed by
/// SiLU in the VQ-GAN.
public struct GroupNorm32 {
    public let weight: Tensor
    public let bias: Tensor
    init(_ sd: StateDict, _ prefix: String, channels: Int) throws {
        weight = try sd.tensor(prefix + "weight", shape: [channels])
        bias = try sd.tensor(prefix + "bias", shape: [channels])
    }
    /// SiLU(GN(x)) in place; `stats` are x's group statistics when already known.
    func apply(_ x: inout Tensor, stats: NetworkOps.GroupStatistics? = nil) {
        NetworkOps.groupNorm(&x, groups: 32, eps: 1e-6, weight: weight, bias: bias, silu: true, stats: stats)
    }
    /// SiLU(GN(x)) into a new tensor (x is kept for the residual).
    func callAsFunction(_ x: Tensor, stats: NetworkOps.GroupStatistics? = nil) -> Tensor {
        NetworkOps.groupNormed(x, groups: 32, eps: 1e-6, weight: weight, bias: bias, silu: true, stats: stats)
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
    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x, stats: nil, tap: nil).output }

    /// The block on x (whose GroupNorm(32) statistics may be known already), returning the output and
    /// its GroupNorm(32) statistics (computed in the residual-add pass, for the next block's norm1).
    /// `tap(op, tensor)` sees each op's output (profiling).
    func forward(_ x: Tensor, stats: NetworkOps.GroupStatistics?, tap: ((String, Tensor) -> Void)?)
        -> (output: Tensor, stats: NetworkOps.GroupStatistics) {
        var h = norm1(x, stats: stats)
        tap?("norm1", h)
        h = conv1(h)
        tap?("conv1", h)
        norm2.apply(&h)
        tap?("norm2", h)
        h = conv2(h)
        tap?("conv2", h)
        let out = NetworkOps.addReturningStatistics(&h, x, groups: 32)
        tap?("add", h)
        return (h, out)
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
    /// [−2e, ‖e‖²] per code (codes × (dim + 1)): the snap's GEMM operand, built once.
    let codebookAugmented: [Float]
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
        let k = a.embeddingDim + 1
        var augmented = [Float](repeating: 0, count: a.codes * k)
        for c in 0..<a.codes {
            for d in 0..<a.embeddingDim { augmented[c * k + d] = -2 * cbv[c * a.embeddingDim + d] }
            augmented[c * k + a.embeddingDim] = norms[c]
        }
        codebookAugmented = augmented
    }

    /// Intermediate activations of the encoder, for golden checks (names as in golden.safetensors).
    public typealias Taps = (String, Tensor) -> Void

    /// The unquantised latent `pre_vq_conv(encoder(x))`, x (B, C, D, H, W) with sides divisible by 2^levels.
    /// `taps` sees the block outputs named as in golden.safetensors, and also every op inside the
    /// residual blocks (`block0.res.conv1`, …; for profiling).
    public func encode(_ x: Tensor, taps: Taps? = nil) -> Tensor {
        precondition(x.rank == 5 && x.shape[1] == architecture.imageChannels, "VQGAN encode: input \(x.shape)")
        var h = convFirst(x)
        taps?("conv_first", h)
        var stats: NetworkOps.GroupStatistics? = nil
        for i in 0..<encDown.count {
            h = encDown[i](h)
            taps?("block\(i).down", h)
            (h, stats) = encRes[i].forward(h, stats: nil, tap: taps.map { t in { t("block\(i).res.\($0)", $1) } })
            taps?("block\(i).res", h)
        }
        encFinal.apply(&h, stats: stats)
        taps?("final_block", h)
        let z = preVQ(h)
        taps?("pre_vq_conv", z)
        return z
    }

    /// Snap tiling (`tumorbench networks snap-variants` compares them): true (default) = each worker
    /// runs single-threaded GEMMs on its own row tiles; false = this thread issues each tile's GEMM
    /// with OpenBLAS's threads and the tile's rows are split over the workers for the argmin (2–6×
    /// slower here: a thread hand-off per small GEMM). Tiles of 1024 rows × 256 codes (1 MiB of
    /// products per worker, in its L2) measured fastest.
    nonisolated(unsafe) public static var snapWorkerGEMM = true
    nonisolated(unsafe) public static var snapTileRows = 1024
    nonisolated(unsafe) public static var snapTileCodes = 256
    /// With `KernelContext.useAVX512` (and an 8-dim latent): the fused AVX-512 search instead of the
    /// tiled GEMMs (`tumorbench networks snap-variants` compares them).
    nonisolated(unsafe) public static var snapFused = true
    /// Codes per L1 chunk of the fused search (augmented codebook chunk of 36 bytes per code).
    nonisolated(unsafe) public static var snapChunkCodes = 512
    /// Codes between two running-minimum checks of the fused search (multiple of 8, ≤ 256).
    nonisolated(unsafe) public static var snapFusedTileCodes = 128

    /// Nearest codebook entry of each latent vector, as the reference's
    /// `argmin((‖z‖² − 2 z·e) + ‖e‖²)` with the first index on ties (`torch.argmin`).
    ///
    /// One GEMM per (tile of rows × tile of codes) with the norms folded in: [z, 1]·[−2e, ‖e‖²]ᵀ gives
    /// ‖e‖² − 2 z·e directly (the augmented codebook is built once per model). Tiles are small enough
    /// for the products to stay in L2 while a SIMD pass takes each row's minimum; only codes within
    /// a few ulps of the running minimum are then re-scored with the reference's exact expression,
    /// so near-ties resolve as the reference's formula does, and exact ties to the lowest index.
    /// Returns indices (B, D, H, W) as Int32.
    public func quantize(_ z: Tensor) -> [Int32] {
        let B = z.shape[0], C = z.shape[1], S = z.count / (B * C)
        precondition(C == architecture.embeddingDim, "quantize: latent \(z.shape) for embedding dim \(architecture.embeddingDim)")
        let codes = architecture.codes, N = B * S, K = C + 1
        var indices = [Int32](repeating: 0, count: N)
        // Rows (b, s) as [z, 1], and ‖z‖².
        var rows = [Float](repeating: 1, count: N * K)
        var zz = [Float](repeating: 0, count: N)
        z.withUnsafeBufferPointer { zp in
            for b in 0..<B { for c in 0..<C { for s in 0..<S { rows[(b * S + s) * K + c] = zp[(b * C + c) * S + s] } } }
        }
        for r in 0..<N { var q: Float = 0; for c in 0..<C { q += rows[r * K + c] * rows[r * K + c] }; zz[r] = q }
        if KernelContext.useAVX512 && VQGAN3D.snapFused && C == CodebookSnapAVX512.dimension && codes % 8 == 0 {
            fusedSearch(z, zz: zz, into: &indices)
            return indices
        }
        let tileRows = max(1, VQGAN3D.snapTileRows), tileCodes = max(8, min(codes, VQGAN3D.snapTileCodes))
        let tiles = (N + tileRows - 1) / tileRows
        let maxNorm = codebookNorms.max() ?? 0
        rows.withUnsafeBufferPointer { rp in
        zz.withUnsafeBufferPointer { zp in
        codebook.withUnsafeBufferPointer { ep in
        codebookAugmented.withUnsafeBufferPointer { ap in
        codebookNorms.withUnsafeBufferPointer { nb in
        indices.withUnsafeMutableBufferPointer { ip in
            let snap = Snap(rows: rp.baseAddress!, zz: zp.baseAddress!, codebook: ep.baseAddress!, augmented: ap.baseAddress!,
                            norms: nb.baseAddress!, maxNorm: maxNorm, dim: C, codes: codes, out: ip.baseAddress!)
            if VQGAN3D.snapWorkerGEMM {
                let workers = min(KernelContext.threads, tiles)
                let saved = BLASThreads.count
                if workers > 1 { BLASThreads.count = 1 }
                defer { if workers > 1 { BLASThreads.count = saved } }
                KernelContext.parallelFor(tiles) { range in
                    var state = Snap.State(rows: tileRows, codes: tileCodes)
                    for t in range {
                        let r0 = t * tileRows
                        snap.rowTile(r0..<min(N, r0 + tileRows), tileCodes: tileCodes, state: &state, parallel: false)
                    }
                }
            } else {
                var state = Snap.State(rows: tileRows, codes: tileCodes)
                for t in 0..<tiles {
                    let r0 = t * tileRows
                    snap.rowTile(r0..<min(N, r0 + tileRows), tileCodes: tileCodes, state: &state, parallel: true)
                }
            }
        }}}}}}
        return indices
    }

    /// The AVX-512 snap (`CodebookSnapAVX512`): no product matrix; the latent transposed to
    /// (dim, rows padded to 16) and the 16-row blocks split over the workers, each sweeping the
    /// codebook in L1-sized chunks. Same candidates' exact re-scoring as the GEMM path, same indices.
    func fusedSearch(_ z: Tensor, zz: [Float], into indices: inout [Int32]) {
        let B = z.shape[0], C = z.shape[1], S = z.count / (B * C), N = B * S
        let pitch = (N + 15) / 16 * 16, codes = architecture.codes
        var zt = [Float](repeating: 0, count: C * pitch), zzp = [Float](repeating: 0, count: pitch)
        z.withUnsafeBufferPointer { zp in
            for b in 0..<B { for c in 0..<C { for s in 0..<S { zt[c * pitch + b * S + s] = zp[(b * C + c) * S + s] } } }
        }
        for r in 0..<N { zzp[r] = zz[r] }
        var runningMin = [Float](repeating: .infinity, count: pitch), bestValue = runningMin
        var bestIndex = [Int32](repeating: 0, count: pitch)
        let maxNorm = codebookNorms.max() ?? 0, chunk = VQGAN3D.snapChunkCodes
        zt.withUnsafeBufferPointer { ztp in
        zzp.withUnsafeBufferPointer { zzb in
        codebook.withUnsafeBufferPointer { ep in
        codebookAugmented.withUnsafeBufferPointer { ap in
        codebookNorms.withUnsafeBufferPointer { nb in
        runningMin.withUnsafeMutableBufferPointer { rm in
        bestValue.withUnsafeMutableBufferPointer { bv in
        bestIndex.withUnsafeMutableBufferPointer { bi in
            KernelContext.parallelFor(pitch / 16) { blocks in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: CodebookSnapAVX512.scratchCount)
                defer { scratch.deallocate() }
                CodebookSnapAVX512.search(latent: ztp.baseAddress!, pitch: pitch, squaredNorms: zzb.baseAddress!,
                                          rows: (blocks.lowerBound * 16)..<(blocks.upperBound * 16), validRows: N,
                                          codebook: ep.baseAddress!, augmented: ap.baseAddress!, norms: nb.baseAddress!,
                                          maxNorm: maxNorm, codeRange: 0..<codes, tileCodes: VQGAN3D.snapFusedTileCodes, chunkCodes: chunk,
                                          runningMin: rm.baseAddress!, bestValue: bv.baseAddress!, bestIndex: bi.baseAddress!,
                                          scratch: scratch)
            }
        }}}}}}}}
        for r in 0..<N { indices[r] = bestIndex[r] }
    }

    /// The codebook snap's inner loops (see `quantize`).
    struct Snap {
        let rows: UnsafePointer<Float>, zz: UnsafePointer<Float>, codebook: UnsafePointer<Float>
        let augmented: UnsafePointer<Float>, norms: UnsafePointer<Float>, maxNorm: Float
        let dim: Int, codes: Int
        let out: UnsafeMutablePointer<Int32>

        /// Per-worker buffers: the products of one tile, and each row's running minimum and best code.
        struct State {
            var products: [Float], runningMin: [Float], bestValue: [Float], bestIndex: [Int32]
            init(rows: Int, codes: Int) {
                products = [Float](repeating: 0, count: rows * codes)
                runningMin = [Float](repeating: 0, count: rows)
                bestValue = runningMin
                bestIndex = [Int32](repeating: 0, count: rows)
            }
        }

        /// The reference's distance of row r to code k: (‖z‖² − 2 z·e) + ‖e‖².
        @inline(__always)
        func exactDistance(_ r: Int, _ k: Int) -> Float {
            var dot: Float = 0
            for c in 0..<dim { dot += rows[r * (dim + 1) + c] * codebook[k * dim + c] }
            return (zz[r] - 2 * dot) + norms[k]
        }

        func rowTile(_ range: Range<Int>, tileCodes: Int, state: inout State, parallel: Bool) {
            let nr = range.count, K = dim + 1
            state.products.withUnsafeMutableBufferPointer { pp in
            state.runningMin.withUnsafeMutableBufferPointer { rm in
            state.bestValue.withUnsafeMutableBufferPointer { bv in
            state.bestIndex.withUnsafeMutableBufferPointer { bi in
                let products = pp.baseAddress!
                let rm = rm.baseAddress!, bv = bv.baseAddress!, bi = bi.baseAddress!
                for r in 0..<nr { rm[r] = .infinity; bv[r] = .infinity; bi[r] = 0 }
                var c0 = 0
                while c0 < codes {
                    let nc = min(tileCodes, codes - c0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nr), Int32(nc), Int32(K), 1,
                                rows + range.lowerBound * K, Int32(K), augmented + c0 * K, Int32(K), 0, products, Int32(nc))
                    let body = { (sub: Range<Int>) in
                        for r in sub {
                            let row = products + r * nc
                            let m = VQGAN3D.minimum(row, nc)
                            // Codes whose reference distance may tie or beat the best so far lie within the
                            // rounding error of both expressions (≲ (K + 2)·ε·(‖z‖² + 2‖e‖²) each) of the
                            // running minimum of the folded values.
                            let lowest = min(rm[r], m)
                            let slack = 32 * Float.ulpOfOne * (self.zz[range.lowerBound + r] + 2 * self.maxNorm + abs(lowest))
                            if m > rm[r] + slack { continue }
                            rm[r] = lowest
                            VQGAN3D.forEach(row, nc, atMost: lowest + slack) { k in
                                let d = self.exactDistance(range.lowerBound + r, c0 + k)
                                if d < bv[r] { bv[r] = d; bi[r] = Int32(c0 + k) }
                            }
                        }
                    }
                    if parallel { KernelContext.parallelFor(nr, body) } else { body(0..<nr) }
                    c0 += nc
                }
                for r in 0..<nr { out[range.lowerBound + r] = bi[r] }
            }}}}
        }
    }

    /// The smallest of p[0..<n] (compare-and-select, which compiles to `minps`).
    @inline(__always)
    static func minimum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        let raw = UnsafeRawPointer(p)
        var m0 = SIMD8<Float>(repeating: .infinity), m1 = m0
        var k = 0
        while k + 16 <= n {
            let v0 = raw.loadUnaligned(fromByteOffset: 4 * k, as: SIMD8<Float>.self)
            let v1 = raw.loadUnaligned(fromByteOffset: 4 * k + 32, as: SIMD8<Float>.self)
            m0.replace(with: v0, where: v0 .< m0)
            m1.replace(with: v1, where: v1 .< m1)
            k += 16
        }
        m0.replace(with: m1, where: m1 .< m0)
        // Horizontal minimum by halves (`SIMD.min()` is a generic scalar loop here).
        var h = m0.lowHalf
        h.replace(with: m0.highHalf, where: m0.highHalf .< h)
        var q = h.lowHalf
        q.replace(with: h.highHalf, where: h.highHalf .< q)
        var m = Swift.min(q[0], q[1])
        while k < n { m = Swift.min(m, p[k]); k += 1 }
        return m
    }

    /// Calls `body(k)` in increasing k for every p[k] ≤ threshold.
    @inline(__always)
    static func forEach(_ p: UnsafePointer<Float>, _ n: Int, atMost threshold: Float, _ body: (Int) -> Void) {
        let raw = UnsafeRawPointer(p), t = SIMD8<Float>(repeating: threshold)
        var k = 0
        while k + 8 <= n {
            let hit = raw.loadUnaligned(fromByteOffset: 4 * k, as: SIMD8<Float>.self) .<= t
            if any(hit) { for l in 0..<8 where hit[l] { body(k + l) } }
            k += 8
        }
        while k < n { if p[k] <= threshold { body(k) }; k += 1 }
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
    /// `taps` sees the block outputs named as in golden.safetensors, and also the snap (`quantize`),
    /// every op inside the residual blocks (`block0.res1.conv1`, …) and `conv_last` (for profiling).
    public func decode(_ z: Tensor, quantize: Bool = true, taps: Taps? = nil) -> Tensor {
        let latent: Tensor
        if quantize {
            let idx = self.quantize(z)
            latent = embed(idx, shape: [z.shape[0]] + Array(z.shape.dropFirst(2)))
            taps?("quantize", latent)
        } else {
            latent = z
        }
        var h = postVQ(latent)
        taps?("post_vq_conv", h)
        decFinal.apply(&h)
        taps?("final_block", h)
        var stats: NetworkOps.GroupStatistics? = nil
        for i in 0..<decUp.count {
            h = decUp[i](h)
            taps?("block\(i).up", h)
            (h, stats) = decRes1[i].forward(h, stats: nil, tap: taps.map { t in { t("block\(i).res1.\($0)", $1) } })
            taps?("block\(i).res1", h)
            (h, stats) = decRes2[i].forward(h, stats: stats, tap: taps.map { t in { t("block\(i).res2.\($0)", $1) } })
            taps?("block\(i).res2", h)
        }
        let out = convLast(h)
        taps?("conv_last", out)
        return out
    }
}
