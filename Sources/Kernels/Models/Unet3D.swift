import COpenBLAS
import Foundation

/// The denoiser of DiffTumor: lucidrains' video-diffusion `Unet3D` as the reference configures it
/// (dim 24, mults 1-2-4-8, 17 input / 8 output channels, 8 heads × 32). Names follow the state dict;
/// dims, levels, heads and kernel sizes are inferred from tensor shapes.
public final class Unet3D {
    public struct Architecture: CustomStringConvertible, Sendable {
        public var dim: Int
        public var inputChannels: Int
        public var outputChannels: Int
        public var levelDims: [Int]
        public var heads: Int
        public var dimHead: Int
        public var initKernel: Int
        public var timeDim: Int
        public var description: String {
            "Unet3D(dim=\(dim), dims=\(levelDims), channels=\(inputChannels), out_dim=\(outputChannels), heads=\(heads)x\(dimHead), init_kernel=\(initKernel), time_dim=\(timeDim))"
        }
    }

    struct Conv {
        let weight: Tensor, bias: Tensor?
        let stride: [Int], pad: [Int]
        init(_ sd: StateDict, _ p: String, shape: [Int], bias: Bool = true, stride: [Int] = [1, 1, 1], pad: [Int] = [0, 0, 0]) throws {
            weight = try sd.tensor(p + "weight", shape: shape)
            self.bias = bias ? try sd.tensor(p + "bias", shape: [shape[0]]) : nil
            self.stride = stride; self.pad = pad
        }
        func callAsFunction(_ x: Tensor) -> Tensor {
            if Unet3D.pointwiseGEMM && weight.shape[2] == 1 && weight.shape[3] == 1 && weight.shape[4] == 1
                && stride == [1, 1, 1] && pad == [0, 0, 0] {
                return x.pointwiseConv3d(weight: weight, bias: bias)
            }
            return x.conv3d(weight: weight, bias: bias, stride: stride, padding: Padding3d(front: pad, back: pad, mode: .zero))
        }
    }

    struct Linear {
        let weight: Tensor, bias: Tensor?
        init(_ sd: StateDict, _ p: String, out: Int, in: Int, bias: Bool = true) throws {
            weight = try sd.tensor(p + "weight", shape: [out, `in`])
            self.bias = bias ? try sd.tensor(p + "bias", shape: [out]) : nil
        }
        func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight: weight, bias: bias) }
    }

    /// `Block`: conv (1,3,3) → GroupNorm(8) → optional ×(1+scale)+shift → SiLU.
    struct Block {
        let proj: Conv, normWeight: Tensor, normBias: Tensor
        init(_ sd: StateDict, _ p: String, cin: Int, cout: Int) throws {
            proj = try Conv(sd, p + "proj.", shape: [cout, cin, 1, 3, 3], pad: [0, 1, 1])
            normWeight = try sd.tensor(p + "norm.weight", shape: [cout])
            normBias = try sd.tensor(p + "norm.bias", shape: [cout])
        }
        /// `residual`, when given, is added after the SiLU (in the normalisation pass).
        func callAsFunction(_ x: Tensor, scale: Tensor? = nil, shift: Tensor? = nil, residual: Tensor? = nil) -> Tensor {
            var h = proj(x)
            NetworkOps.groupNorm(&h, groups: 8, eps: 1e-5, weight: normWeight, bias: normBias, scale: scale, shift: shift, silu: true,
                                 residual: residual)
            return h
        }
    }

    struct ResnetBlock {
        let mlp: Linear?, block1: Block, block2: Block, resConv: Conv?
        let cout: Int
        init(_ sd: StateDict, _ p: String, cin: Int, cout: Int, timeDim: Int?) throws {
            mlp = try timeDim.map { try Linear(sd, p + "mlp.1.", out: 2 * cout, in: $0) }
            block1 = try Block(sd, p + "block1.", cin: cin, cout: cout)
            block2 = try Block(sd, p + "block2.", cin: cout, cout: cout)
            resConv = cin != cout ? try Conv(sd, p + "res_conv.", shape: [cout, cin, 1, 1, 1]) : nil
            self.cout = cout
        }
        /// `t` is the time embedding (B, timeDim).
        func callAsFunction(_ x: Tensor, _ t: Tensor?) -> Tensor {
            var scale: Tensor? = nil, shift: Tensor? = nil
            if let mlp, let t {
                var s = t
                NetworkOps.silu(&s)
                let ss = mlp(s).scalars
                let B = t.shape[0]
                var sc = [Float](), sh = [Float]()
                for b in 0..<B {
                    let base: Int = b * 2 * cout
                    for c in 0..<cout {
                        sc.append(ss[base + c])
                        sh.append(ss[base + cout + c])
                    }
                }
                scale = Tensor(shape: [B, cout], data: sc)
                shift = Tensor(shape: [B, cout], data: sh)
            }
            var h = block1(x, scale: scale, shift: shift)
            if Unet3D.fuseResidualAdd { return block2(h, residual: resConv.map { $0(x) } ?? x) }
            h = block2(h)
            h.add(resConv.map { $0(x) } ?? x)
            return h
        }
    }

    /// Residual(PreNorm(dim, SpatialLinearAttention(dim, heads, 32))).
    struct SpatialLinearAttention {
        let gamma: Tensor, toQKV: Tensor, toOut: Tensor, toOutBias: Tensor
        let heads: Int, dimHead: Int
        init(_ sd: StateDict, _ p: String, dim: Int, heads: Int, dimHead: Int) throws {
            gamma = try sd.tensor(p + "fn.norm.gamma", shape: [1, dim, 1, 1, 1])
            toQKV = try sd.tensor(p + "fn.fn.to_qkv.weight", shape: [3 * heads * dimHead, dim, 1, 1])
            toOut = try sd.tensor(p + "fn.fn.to_out.weight", shape: [dim, heads * dimHead, 1, 1])
            toOutBias = try sd.tensor(p + "fn.fn.to_out.bias", shape: [dim])
            self.heads = heads; self.dimHead = dimHead
            folded = UnetAttention.foldedOutputWeights(toQKV: toQKV, toOut: toOut, channels: dim, heads: heads)
        }
        /// The output weights with the value projection folded in (C ≤ dh), computed once at load.
        let folded: [Float]?
        func callAsFunction(_ x: Tensor, scratch: UnetScratch) -> Tensor {
            Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: toQKV, toOut: toOut, toOutBias: toOutBias, heads: heads,
                                               folded: UnetAttention.cacheFoldedWeights != 0 ? folded : nil, scratch: scratch)
        }
    }

    /// Residual(PreNorm(dim, EinopsToAndFrom(..., Attention(dim, heads, 32, rotary?)))):
    /// `temporal` attends along D at each (h, w) (rotary + relative bias); otherwise over (h, w) of each slice.
    struct FullAttention {
        let gamma: Tensor, toQKV: Tensor, toOut: Tensor, freqs: [Float]?
        let heads: Int, dimHead: Int, temporal: Bool
        init(_ sd: StateDict, _ p: String, dim: Int, heads: Int, dimHead: Int, temporal: Bool) throws {
            gamma = try sd.tensor(p + "fn.norm.gamma", shape: [1, dim, 1, 1, 1])
            toQKV = try sd.tensor(p + "fn.fn.fn.to_qkv.weight", shape: [3 * heads * dimHead, dim])
            toOut = try sd.tensor(p + "fn.fn.fn.to_out.weight", shape: [dim, heads * dimHead])
            if temporal {
                let f = try sd.tensor(p + "fn.fn.fn.rotary_emb.freqs")
                guard f.rank == 1, f.count <= dimHead / 2 else {
                    throw WeightsError(.shapeMismatch, file: sd.file, "tensor '\(p)fn.fn.fn.rotary_emb.freqs' has shape \(f.shape)")
                }
                freqs = f.scalars
            } else {
                freqs = nil
            }
            self.heads = heads; self.dimHead = dimHead; self.temporal = temporal
            folded = temporal ? UnetAttention.foldedOutputWeights(toQKV: toQKV, toOut: toOut, channels: dim, heads: heads) : nil
        }
        /// Temporal: the output weights with the value projection folded in (C ≤ dh), computed once at load.
        let folded: [Float]?
        func callAsFunction(_ x: Tensor, bias: [Float]?, scratch: UnetScratch) -> Tensor {
            let (B, C, F, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
            let P = H * W, N = F * P, hidden = heads * dimHead
            if temporal {
                return Unet3D.temporalAttentionBlock(x, gamma: gamma, toQKV: toQKV, toOut: toOut, heads: heads, freqs: freqs, bias: bias,
                                                     folded: UnetAttention.cacheFoldedWeights != 0 ? folded : nil, scratch: scratch)
            }
            let xn = NetworkOps.channelLayerNorm(x, gamma: gamma)
            var out = x
            var qkvT = [Float](repeating: 0, count: N * 3 * hidden)
            var oT = [Float](repeating: 0, count: N * hidden)
            let rotary = freqs.map { AttentionOps.Rotary(freqs: $0, positions: F) }
            xn.withUnsafeBufferPointer { xp in
                toQKV.withUnsafeBufferPointer { wq in
                    toOut.withUnsafeBufferPointer { wo in
                        out.withUnsafeMutableBufferPointer { op in
                            qkvT.withUnsafeMutableBufferPointer { qp in
                                oT.withUnsafeMutableBufferPointer { oo in
                                    for b in 0..<B {
                                        // (N × 3·hidden) = xnᵀ (N × C) · Wqkvᵀ (C × 3·hidden)
                                        NetworkOps.sgemm(transA: true, transB: true, M: N, N: 3 * hidden, K: C, A: xp.baseAddress! + b * C * N, lda: N,
                                                         B: wq.baseAddress!, ldb: C, beta: 0, C: qp.baseAddress!, ldc: 3 * hidden)
                                        if temporal {
                                            AttentionOps.softmaxAttention(qkvT: qp.baseAddress!, out: oo.baseAddress!, groups: P, tokens: F,
                                                                          groupStride: 1, tokenStride: P, heads: heads, dimHead: dimHead,
                                                                          rotary: rotary, bias: bias)
                                        } else {
                                            AttentionOps.softmaxAttention(qkvT: qp.baseAddress!, out: oo.baseAddress!, groups: F, tokens: P,
                                                                          groupStride: P, tokenStride: 1, heads: heads, dimHead: dimHead,
                                                                          rotary: nil, bias: nil)
                                        }
                                        // y (C × N) += Wout (C × hidden) · oTᵀ
                                        NetworkOps.sgemm(transA: false, transB: true, M: C, N: N, K: hidden, A: wo.baseAddress!, lda: hidden,
                                                         B: oo.baseAddress!, ldb: hidden, beta: 1, C: op.baseAddress! + b * C * N, ldc: N)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return out
        }
    }

    struct Level {
        let block1: ResnetBlock, block2: ResnetBlock
        let spatial: SpatialLinearAttention, temporal: FullAttention
        let resample: Conv?          // downsample (downs) or nil
        let upsample: (Tensor, Tensor)? // (weight, bias) of ConvTranspose3d (ups)
    }

    public let architecture: Architecture
    let relPosTable: Tensor
    let initConv: Conv
    let initTemporal: FullAttention
    let timeLinear1: Linear, timeLinear2: Linear
    let downs: [Level], ups: [Level]
    let mid1: ResnetBlock, midSpatial: FullAttention, midTemporal: FullAttention, mid2: ResnetBlock
    let finalBlock: ResnetBlock, finalConv: Conv
    /// `RelativePositionBias(max_distance=32)` as the Unet3D constructor sets it.
    public let maxDistance = 32
    /// Attention scratch memory, reused across forward passes (one per concurrent pass).
    let scratchPool = UnetScratchPool()

    public static func inferArchitecture(_ sd: StateDict) throws -> Architecture {
        func shape(_ k: String) throws -> [Int] {
            guard let s = sd.shape(k) else { throw WeightsError(.missingKey, file: sd.file, "no tensor '\(k)' (Unet3D)") }
            return s
        }
        let ic = try shape("init_conv.weight")
        guard ic.count == 5, ic[2] == 1, ic[3] == ic[4], ic[3] % 2 == 1 else {
            throw WeightsError(.shapeMismatch, file: sd.file, "init_conv.weight has shape \(ic)")
        }
        var dims: [Int] = []
        while sd.contains("downs.\(dims.count).0.block1.proj.weight") { dims.append(try shape("downs.\(dims.count).0.block1.proj.weight")[0]) }
        guard !dims.isEmpty else { throw WeightsError(.architecture, file: sd.file, "no downs.*.0.block1.proj.weight") }
        let rel = try shape("time_rel_pos_bias.relative_attention_bias.weight")
        let qkv = try shape("init_temporal_attn.fn.fn.fn.to_qkv.weight")
        guard rel.count == 2, qkv.count == 2, qkv[0] % (3 * rel[1]) == 0 else {
            throw WeightsError(.architecture, file: sd.file, "attention shapes \(qkv) / \(rel) are inconsistent")
        }
        let heads = rel[1]
        let t1 = try shape("time_mlp.1.weight")
        let fc = try shape("final_conv.1.weight")
        return Architecture(dim: t1[1], inputChannels: ic[1], outputChannels: fc[0], levelDims: dims, heads: heads,
                            dimHead: qkv[0] / (3 * heads), initKernel: ic[3], timeDim: t1[0])
    }

    /// Loads from an Unet3D state dict (keys without the `denoise_fn.` prefix).
    public init(stateDict sd: StateDict) throws {
        let a = try Unet3D.inferArchitecture(sd)
        architecture = a
        let (h, dh, td) = (a.heads, a.dimHead, a.timeDim)
        relPosTable = try sd.tensor("time_rel_pos_bias.relative_attention_bias.weight")
        let initDim = sd.shape("init_conv.weight")![0]
        let k = a.initKernel
        initConv = try Conv(sd, "init_conv.", shape: [initDim, a.inputChannels, 1, k, k], pad: [0, k / 2, k / 2])
        initTemporal = try FullAttention(sd, "init_temporal_attn.", dim: initDim, heads: h, dimHead: dh, temporal: true)
        timeLinear1 = try Linear(sd, "time_mlp.1.", out: td, in: a.dim)
        timeLinear2 = try Linear(sd, "time_mlp.3.", out: td, in: td)
        let dims = [initDim] + a.levelDims
        var downs: [Level] = []
        for i in 0..<a.levelDims.count {
            let (din, dout) = (dims[i], dims[i + 1])
            let p = "downs.\(i)."
            let last = i == a.levelDims.count - 1
            downs.append(Level(
                block1: try ResnetBlock(sd, p + "0.", cin: din, cout: dout, timeDim: td),
                block2: try ResnetBlock(sd, p + "1.", cin: dout, cout: dout, timeDim: td),
                spatial: try SpatialLinearAttention(sd, p + "2.", dim: dout, heads: h, dimHead: dh),
                temporal: try FullAttention(sd, p + "3.", dim: dout, heads: h, dimHead: dh, temporal: true),
                resample: last ? nil : try Conv(sd, p + "4.", shape: [dout, dout, 1, 4, 4], stride: [1, 2, 2], pad: [0, 1, 1]),
                upsample: nil))
        }
        self.downs = downs
        let mid = dims.last!
        mid1 = try ResnetBlock(sd, "mid_block1.", cin: mid, cout: mid, timeDim: td)
        midSpatial = try FullAttention(sd, "mid_spatial_attn.", dim: mid, heads: h, dimHead: dh, temporal: false)
        midTemporal = try FullAttention(sd, "mid_temporal_attn.", dim: mid, heads: h, dimHead: dh, temporal: true)
        mid2 = try ResnetBlock(sd, "mid_block2.", cin: mid, cout: mid, timeDim: td)
        var ups: [Level] = []
        let pairs = Array(zip(dims.dropLast(), dims.dropFirst())).reversed()
        for (i, (din, dout)) in pairs.enumerated() {
            let p = "ups.\(i)."
            let last = i == a.levelDims.count - 1
            var up: (Tensor, Tensor)? = nil
            if !last {
                up = (try sd.tensor(p + "4.weight", shape: [din, din, 1, 4, 4]), try sd.tensor(p + "4.bias", shape: [din]))
            }
            ups.append(Level(
                block1: try ResnetBlock(sd, p + "0.", cin: dout * 2, cout: din, timeDim: td),
                block2: try ResnetBlock(sd, p + "1.", cin: din, cout: din, timeDim: td),
                spatial: try SpatialLinearAttention(sd, p + "2.", dim: din, heads: h, dimHead: dh),
                temporal: try FullAttention(sd, p + "3.", dim: din, heads: h, dimHead: dh, temporal: true),
                resample: nil, upsample: up))
        }
        self.ups = ups
        finalBlock = try ResnetBlock(sd, "final_conv.0.", cin: a.dim * 2, cout: a.dim, timeDim: nil)
        finalConv = try Conv(sd, "final_conv.1.", shape: [a.outputChannels, a.dim, 1, 1, 1])
    }

    /// Sinusoidal embedding → Linear → GELU → Linear, for each batch element's timestep.
    public func timeEmbedding(_ timesteps: [Float]) -> Tensor {
        let half = architecture.dim / 2
        let e = Float(Foundation.log(10000.0) / Double(half - 1))
        var freqs = [Float](repeating: 0, count: half)
        for i in 0..<half { freqs[i] = Foundation.exp(Float(i) * -e) }
        var emb = [Float]()
        for t in timesteps {
            emb += freqs.map { Foundation.sin(t * $0) }
            emb += freqs.map { Foundation.cos(t * $0) }
        }
        var h = timeLinear1(Tensor(shape: [timesteps.count, 2 * half], data: emb))
        h.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count { p[i] = 0.5 * p[i] * (1 + Float(Foundation.erf(Double(p[i]) / 2.0.squareRoot()))) }
        }
        return timeLinear2(h)
    }

    public typealias Taps = (String, Tensor) -> Void

    /// Whether a step runs OpenBLAS single-threaded (default true when `KernelContext.threads` > 1):
    /// every GEMM of the step is then one-threaded inside the op workers (`NetworkOps.sgemm` splits its
    /// GEMMs across them). With OpenBLAS threads, the mid-level full attention's two GEMMs are the only
    /// threaded calls of the step, and after each the OpenBLAS worker spins on `sched_yield` for its
    /// timeout (~0.1 s), i.e. through most of the step (measured: 12–13% of the process's CPU samples
    /// in a step, `Benchmarks/results/networks.md` session 4; the step's wall time did not change
    /// measurably under load, the CPU is freed for other work). `BLASThreads.count` is process-wide:
    /// it is 1 for the whole step and restored after. False: the previous behaviour (for A/B runs).
    nonisolated(unsafe) public static var singleThreadedBLAS = true

    /// Whether a ResnetBlock adds its residual inside the second Block's GroupNorm pass (true, default:
    /// each channel right after it is normalised, no separate pass over the tensor) or as a separate
    /// `add` afterwards (false: the previous code). The same float additions either way.
    nonisolated(unsafe) public static var fuseResidualAdd = true

    /// Whether the 1×1×1 convolutions (ResnetBlock `res_conv`s, the final projection) run as plain
    /// GEMMs on the input (`Tensor.pointwiseConv3d`, true, default) or through `conv3d`'s general
    /// lowering (false: the previous code, an im2col copy and a copy-out on large planes).
    nonisolated(unsafe) public static var pointwiseGEMM = true

    /// ε prediction for x (B, out, D, H, W) with condition (B, in − out, D, H, W) at `timesteps` (one per batch element).
    /// H and W must be divisible by 2^(levels − 1).
    public func callAsFunction(_ x: Tensor, cond: Tensor, timesteps: [Float], taps: Taps? = nil) -> Tensor {
        precondition(x.rank == 5 && cond.rank == 5 && x.shape[1] + cond.shape[1] == architecture.inputChannels,
                     "Unet3D: x \(x.shape) and cond \(cond.shape) must give \(architecture.inputChannels) channels")
        precondition(timesteps.count == x.shape[0], "Unet3D: \(timesteps.count) timesteps for batch \(x.shape[0])")
        let F = x.shape[2]
        let bias = AttentionOps.relativePositionBias(table: relPosTable, tokens: F, maxDistance: maxDistance)
        let scratch = scratchPool.take()
        defer { scratchPool.give(scratch) }
        let savedBLAS = BLASThreads.count
        let singleBLAS = Unet3D.singleThreadedBLAS && KernelContext.threads > 1 && savedBLAS != 1
        if singleBLAS { BLASThreads.count = 1 }
        defer { if singleBLAS { BLASThreads.count = savedBLAS } }
        var h = Tensor.concat([x, cond], axis: 1)
        h = initConv(h)
        taps?("init_conv", h)
        let r = h
        h = initTemporal(h, bias: bias, scratch: scratch)
        taps?("init_temporal_attn", h)
        let t = timeEmbedding(timesteps)
        taps?("time_mlp", t)
        var skips: [Tensor] = []
        for (i, level) in downs.enumerated() {
            h = level.block1(h, t); taps?("downs.\(i).0", h)
            h = level.block2(h, t); taps?("downs.\(i).1", h)
            h = level.spatial(h, scratch: scratch); taps?("downs.\(i).2", h)
            h = level.temporal(h, bias: bias, scratch: scratch); taps?("downs.\(i).3", h)
            skips.append(h)
            if let down = level.resample { h = down(h); taps?("downs.\(i).4", h) }
        }
        h = mid1(h, t); taps?("mid_block1", h)
        h = midSpatial(h, bias: nil, scratch: scratch); taps?("mid_spatial_attn", h)
        h = midTemporal(h, bias: bias, scratch: scratch); taps?("mid_temporal_attn", h)
        h = mid2(h, t); taps?("mid_block2", h)
        for (i, level) in ups.enumerated() {
            h = Tensor.concat([h, skips.removeLast()], axis: 1)
            h = level.block1(h, t); taps?("ups.\(i).0", h)
            h = level.block2(h, t); taps?("ups.\(i).1", h)
            h = level.spatial(h, scratch: scratch); taps?("ups.\(i).2", h)
            h = level.temporal(h, bias: bias, scratch: scratch); taps?("ups.\(i).3", h)
            if let (w, b) = level.upsample {
                h = h.convTranspose3d(weight: w, bias: b, stride: [1, 2, 2], padding: [0, 1, 1])
                taps?("ups.\(i).4", h)
            }
        }
        h = Tensor.concat([h, r], axis: 1)
        h = finalBlock(h, nil)
        h = finalConv(h)
        taps?("final_conv", h)
        return h
    }
}
