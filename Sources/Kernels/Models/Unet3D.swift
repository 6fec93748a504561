import COpenBLAS
import Foundation
import KernelsAVX512

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
        var isPointwise: Bool {
            weight.shape[2] == 1 && weight.shape[3] == 1 && weight.shape[4] == 1 && stride == [1, 1, 1] && pad == [0, 0, 0]
        }
        func callAsFunction(_ x: Tensor) -> Tensor {
            if Unet3D.pointwiseGEMM && isPointwise {
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

    /// Whether a ResnetBlock normalises its convolution outputs in their own storage (their last
    /// reference moves into the pass). False: the session-4 code path, where a second reference made
    /// every GroupNorm pass copy the tensor first (`tumorbench networks unet-ab --ab norminplace=0,1`).
    nonisolated(unsafe) public static var normsInPlace = true

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
            normalized(proj(x), scale: scale, shift: shift, residual: residual)
        }
        /// The block after its convolution: GroupNorm (+ scale/shift) + SiLU (+ residual), in place in
        /// `convolved`'s storage. The parameter is consuming so that a caller's last reference moves in:
        /// a borrowed one would leave two references and the in-place pass would copy the tensor first.
        func normalized(_ convolved: consuming Tensor, scale: Tensor? = nil, shift: Tensor? = nil, residual: Tensor? = nil) -> Tensor {
            var h = consume convolved
            // `Unet3D.normsInPlace = false`: the previous code's second reference, which made the pass copy first.
            let previous: Tensor? = Unet3D.normsInPlace ? nil : h
            defer { withExtendedLifetime(previous) {} }
            NetworkOps.groupNorm(&h, groups: 8, eps: 1e-5, weight: normWeight, bias: normBias, scale: scale, shift: shift, silu: true,
                                 residual: residual)
            return h
        }
    }

    /// Every ResnetBlock's time-MLP output `Linear(SiLU(t))` for one step, from one GEMM over the blocks'
    /// stacked weights (`Unet3D.batchedTimeMLP`): `values[b * total + block.mlpOffset + j]`.
    struct TimeProjections {
        let values: [Float], total: Int
    }

    struct ResnetBlock {
        let mlp: Linear?, block1: Block, block2: Block, resConv: Conv?
        let cout: Int
        /// Where this block's 2·cout outputs sit in the stacked time-MLP weights (`Unet3D.mlpWeight`).
        let mlpOffset: Int
        /// The 1×1 res_conv's weights packed for `ResidualEpilogueAVX512` (packed at load on AVX-512 CPUs).
        let resPacked: [Float]?
        init(_ sd: StateDict, _ p: String, cin: Int, cout: Int, timeDim: Int?, mlpOffset: Int = 0) throws {
            mlp = try timeDim.map { try Linear(sd, p + "mlp.1.", out: 2 * cout, in: $0) }
            block1 = try Block(sd, p + "block1.", cin: cin, cout: cout)
            block2 = try Block(sd, p + "block2.", cin: cout, cout: cout)
            let res = cin != cout ? try Conv(sd, p + "res_conv.", shape: [cout, cin, 1, 1, 1]) : nil
            resConv = res
            self.cout = cout
            self.mlpOffset = mlpOffset
            if let res, res.isPointwise, KernelContext.useAVX512 {
                resPacked = res.weight.withPointer { ResidualEpilogueAVX512.packWeight($0, rows: cout, cols: cin) }
            } else {
                resPacked = nil
            }
        }

        /// The block through the fused path (`Unet3D.fusedResnet`), on `a` or on the concatenation [a, b];
        /// nil when it does not apply (portable path, knob off, convolutions not on the direct kernels).
        func fused(_ a: Tensor, _ b: Tensor?, _ t: Tensor?, _ projected: TimeProjections?) -> Tensor? {
            let bits = Unet3D.fusedResnet
            guard bits & 5 != 0, KernelContext.useAVX512, Unet3D.fuseResidualAdd, Unet3D.pointwiseGEMM, a.rank == 5 else { return nil }
            let cin = a.shape[1] + (b?.shape[1] ?? 0), spatial = Array(a.shape[2...])
            guard Unet3D.takesDirect(block1.proj, channels: cin, spatial: spatial),
                  Unet3D.takesDirect(block2.proj, channels: cout, spatial: spatial),
                  resConv.map({ $0.isPointwise }) ?? (cin == cout && b == nil) else { return nil }
            let tap = Unet3D.phaseTap
            Unet3D.fusedBlocks += 1
            let (scale, shift) = scaleShift(t, projected); tap?("mlp")
            var x1 = a, x2 = b
            if let b, bits & 8 == 0 { x1 = Tensor.concat([a, b], axis: 1); x2 = nil; tap?("concat") }
            let inConv = bits & 1 != 0
            let (n, planes, planeSize) = (a.shape[0], spatial[0], spatial[1] * spatial[2])
            func statistics(_ y: Tensor, _ pm: [Float]?) -> NetworkOps.GroupStatistics {
                guard let pm else { return NetworkOps.groupStatistics(y, groups: 8) }
                return pm.withUnsafeBufferPointer {
                    NetworkOps.groupStatistics(planeMoments: $0.baseAddress!, images: n, channels: cout, planes: planes,
                                               planeSize: planeSize, groups: 8)
                }
            }
            var c2: Tensor, pm2: [Float]?
            do {
                guard case (var c1, let pm1)? = Unet3D.directConvolution(x1, x2, block1.proj, statistics: inConv) else { return nil }
                tap?("conv1")
                NetworkOps.groupNorm(&c1, groups: 8, eps: 1e-5, weight: block1.normWeight, bias: block1.normBias,
                                     scale: scale, shift: shift, silu: true, stats: statistics(c1, pm1))
                tap?("norm1")
                guard let r = Unet3D.directConvolution(c1, nil, block2.proj, statistics: inConv) else { return nil }
                (c2, pm2) = r
                tap?("conv2")
            }
            let s2 = statistics(c2, pm2)
            if bits & 4 != 0 {
                let k2 = NetworkOps.groupNormCoefficients(s2, channels: cout, eps: 1e-5, weight: block2.normWeight, bias: block2.normBias)
                let packed = resConv == nil ? nil
                    : resPacked ?? resConv!.weight.withPointer { ResidualEpilogueAVX512.packWeight($0, rows: cout, cols: cin) }
                NetworkOps.normalizeAddResidual(&c2, a: k2.a, o: k2.o, silu: true, identity: resConv == nil ? x1 : nil,
                                                packedWeight: packed, bias: resConv?.bias, x1: x1, x2: x2)
                tap?("norm2+add")
                return c2
            }
            let r: Tensor
            if let resConv {
                r = x2.map { Unet3D.pointwiseOfConcat(x1, $0, weight: resConv.weight, bias: resConv.bias) } ?? resConv(x1)
            } else {
                r = x1
            }
            tap?("res_conv")
            NetworkOps.groupNorm(&c2, groups: 8, eps: 1e-5, weight: block2.normWeight, bias: block2.normBias, silu: true, stats: s2,
                                 residual: r)
            tap?("norm2+add")
            return c2
        }

        /// `t` is the time embedding (B, timeDim); `projected`, when given, holds this block's time-MLP output.
        func callAsFunction(_ x: Tensor, _ t: Tensor?, _ projected: TimeProjections? = nil) -> Tensor {
            if let y = fused(x, nil, t, projected) { return y }
            if let tap = Unet3D.phaseTap {   // the same ops, timed one by one
                let (scale, shift) = scaleShift(t, projected); tap("mlp")
                var h = block1.proj(x); tap("conv1")
                h = block1.normalized(consume h, scale: scale, shift: shift); tap("norm1")
                let c2 = block2.proj(h); tap("conv2")
                let r = resConv.map { $0(x) } ?? x; tap("res_conv")
                if Unet3D.fuseResidualAdd { h = block2.normalized(c2, residual: r); tap("norm2+add"); return h }
                h = block2.normalized(c2); tap("norm2")
                h.add(r); tap("add")
                return h
            }
            let (scale, shift) = scaleShift(t, projected)
            var h = block1(x, scale: scale, shift: shift)
            if Unet3D.fuseResidualAdd { return block2(h, residual: resConv.map { $0(x) } ?? x) }
            h = block2(h)
            h.add(resConv.map { $0(x) } ?? x)
            return h
        }

        /// The block on the channel concatenation [a, b] (the ups' skip connections): with
        /// `Unet3D.concatFreeSkips`, block1's convolution reads both inputs in place (direct kernels)
        /// and the 1×1 res_conv is two GEMMs, so the concatenation is never built.
        func callAsFunction(_ a: Tensor, _ b: Tensor, _ t: Tensor?, _ projected: TimeProjections? = nil) -> Tensor {
            if let y = fused(a, b, t, projected) { return y }
            guard Unet3D.concatFreeSkips && Unet3D.pointwiseGEMM, let resConv, resConv.isPointwise,
                  let convolved = Unet3D.directConvolutionOfConcat(a, b, block1.proj) else {
                if let tap = Unet3D.phaseTap { let c = Tensor.concat([a, b], axis: 1); tap("concat"); return self(c, t, projected) }
                return self(Tensor.concat([a, b], axis: 1), t, projected)
            }
            let (scale, shift) = scaleShift(t, projected)
            var h = block1.normalized(convolved, scale: scale, shift: shift)
            let residual = Unet3D.pointwiseOfConcat(a, b, weight: resConv.weight, bias: resConv.bias)
            if Unet3D.fuseResidualAdd { return block2(h, residual: residual) }
            h = block2(h)
            h.add(residual)
            return h
        }

        /// The time MLP's (1 + scale, shift) split, per batch element, or nils without a time embedding.
        func scaleShift(_ t: Tensor?, _ projected: TimeProjections? = nil) -> (Tensor?, Tensor?) {
            var scale: Tensor? = nil, shift: Tensor? = nil
            if let mlp, let t {
                let ss: [Float], stride: Int, first: Int
                if let projected {
                    (ss, stride, first) = (projected.values, projected.total, mlpOffset)
                } else {
                    var s = t
                    NetworkOps.silu(&s)
                    (ss, stride, first) = (mlp(s).scalars, 2 * cout, 0)
                }
                let B = t.shape[0]
                var sc = [Float](), sh = [Float]()
                sc.reserveCapacity(B * cout); sh.reserveCapacity(B * cout)
                for b in 0..<B {
                    let base: Int = b * stride + first
                    for c in 0..<cout {
                        sc.append(ss[base + c])
                        sh.append(ss[base + cout + c])
                    }
                }
                scale = Tensor(shape: [B, cout], data: sc)
                shift = Tensor(shape: [B, cout], data: sh)
            }
            return (scale, shift)
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
            keyTransposed = UnetAttention.keyWeightsTransposed(toQKV: toQKV, channels: dim, hidden: heads * dimHead)
        }
        /// The output weights with the value projection folded in (C ≤ dh), computed once at load.
        let folded: [Float]?
        /// Wkᵀ (C × hidden) for the kᵀ paths, built once at load.
        let keyTransposed: [Float]
        func callAsFunction(_ x: Tensor, scratch: UnetScratch) -> Tensor {
            Unet3D.spatialLinearAttentionBlock(x, gamma: gamma, toQKV: toQKV, toOut: toOut, toOutBias: toOutBias, heads: heads,
                                               folded: UnetAttention.cacheFoldedWeights != 0 ? folded : nil,
                                               keyTransposed: UnetAttention.cacheKeyWeightsTransposed ? keyTransposed : nil, scratch: scratch)
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
    /// `initConv`'s weights split by input channel: [dim, C_x, 1, k, k] for x (the first `outputChannels`
    /// inputs) and [dim, C_cond, 1, k, k] for the condition, contiguous (`Unet3D+Condition.swift`).
    let initConvX: Tensor, initConvCond: Tensor
    let initTemporal: FullAttention
    let timeLinear1: Linear, timeLinear2: Linear
    let downs: [Level], ups: [Level]
    let mid1: ResnetBlock, midSpatial: FullAttention, midTemporal: FullAttention, mid2: ResnetBlock
    let finalBlock: ResnetBlock, finalConv: Conv
    /// The ResnetBlocks' time-MLP weights stacked (Σ 2·cout rows × timeDim) and biases, in `mlpOffset` order.
    let mlpWeight: Tensor, mlpBias: Tensor
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
        guard a.outputChannels < a.inputChannels else {
            throw WeightsError(.architecture, file: sd.file, "init_conv takes \(a.inputChannels) channels for \(a.outputChannels) output channels: no condition")
        }
        initConvX = initConv.weight.slice(axis: 1, 0..<a.outputChannels)
        initConvCond = initConv.weight.slice(axis: 1, a.outputChannels..<a.inputChannels)
        initTemporal = try FullAttention(sd, "init_temporal_attn.", dim: initDim, heads: h, dimHead: dh, temporal: true)
        timeLinear1 = try Linear(sd, "time_mlp.1.", out: td, in: a.dim)
        timeLinear2 = try Linear(sd, "time_mlp.3.", out: td, in: td)
        let dims = [initDim] + a.levelDims
        var mlpRows: [Float] = [], mlpBiases: [Float] = []
        func block(_ p: String, cin: Int, cout: Int) throws -> ResnetBlock {
            let b = try ResnetBlock(sd, p, cin: cin, cout: cout, timeDim: td, mlpOffset: mlpBiases.count)
            mlpRows += b.mlp!.weight.scalars
            mlpBiases += b.mlp!.bias!.scalars
            return b
        }
        var downs: [Level] = []
        for i in 0..<a.levelDims.count {
            let (din, dout) = (dims[i], dims[i + 1])
            let p = "downs.\(i)."
            let last = i == a.levelDims.count - 1
            downs.append(Level(
                block1: try block(p + "0.", cin: din, cout: dout),
                block2: try block(p + "1.", cin: dout, cout: dout),
                spatial: try SpatialLinearAttention(sd, p + "2.", dim: dout, heads: h, dimHead: dh),
                temporal: try FullAttention(sd, p + "3.", dim: dout, heads: h, dimHead: dh, temporal: true),
                resample: last ? nil : try Conv(sd, p + "4.", shape: [dout, dout, 1, 4, 4], stride: [1, 2, 2], pad: [0, 1, 1]),
                upsample: nil))
        }
        self.downs = downs
        let mid = dims.last!
        mid1 = try block("mid_block1.", cin: mid, cout: mid)
        midSpatial = try FullAttention(sd, "mid_spatial_attn.", dim: mid, heads: h, dimHead: dh, temporal: false)
        midTemporal = try FullAttention(sd, "mid_temporal_attn.", dim: mid, heads: h, dimHead: dh, temporal: true)
        mid2 = try block("mid_block2.", cin: mid, cout: mid)
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
                block1: try block(p + "0.", cin: dout * 2, cout: din),
                block2: try block(p + "1.", cin: din, cout: din),
                spatial: try SpatialLinearAttention(sd, p + "2.", dim: din, heads: h, dimHead: dh),
                temporal: try FullAttention(sd, p + "3.", dim: din, heads: h, dimHead: dh, temporal: true),
                resample: nil, upsample: up))
        }
        self.ups = ups
        finalBlock = try ResnetBlock(sd, "final_conv.0.", cin: a.dim * 2, cout: a.dim, timeDim: nil)
        mlpWeight = Tensor(shape: [mlpBiases.count, td], data: mlpRows)
        mlpBias = Tensor(shape: [mlpBiases.count], data: mlpBiases)
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

    /// `Linear(SiLU(t))` of every ResnetBlock at once: SiLU once, one GEMM (B × Σ 2·cout) on the stacked weights.
    func timeProjections(_ t: Tensor) -> TimeProjections {
        var s = t
        NetworkOps.silu(&s)
        return TimeProjections(values: s.linear(weight: mlpWeight, bias: mlpBias).scalars, total: mlpBias.count)
    }

    public typealias Taps = (String, Tensor) -> Void

    /// Profiling hook (nil: off): when set, ResnetBlocks run their ops one by one and call it after each
    /// with the op's name ("mlp", "conv1", "norm1", "conv2", "res_conv", "norm2+add", "concat"), for
    /// `tumorbench networks unet-profile --phases`. Not thread-safe: set it only around a step.
    nonisolated(unsafe) public static var phaseTap: ((String) -> Void)? = nil

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

    /// Whether the convolutions of channel concatenations (init conv on [x, cond], the ups' and the final
    /// ResnetBlocks on [h, skip]) read both inputs in place when they take the AVX-512 direct kernels
    /// (`DirectConvolution.conv3d(secondInput:)`), the 1×1 res_conv as two accumulating GEMMs (true),
    /// or build the concatenated tensor first (false, default: the previous code; also every shape the
    /// direct kernels do not take, e.g. the 6² and 3² levels). Measured (session 5, perf samples over
    /// 41 steps per setting): the concatenation copies go (memmove −33 samples) but OpenBLAS packs the
    /// split res_conv GEMMs twice (+41 samples); `unet-ab dconv=15,47` ratios 0.993–1.027, median 1.006.
    nonisolated(unsafe) public static var concatFreeSkips = false

    /// Whether a step computes every ResnetBlock's time-MLP projection `Linear(SiLU(t))` at once, as one GEMM
    /// over the stacked weights (true, default), or each block its own SiLU copy and GEMM (false: the
    /// previous code, default). The same dot products. Knob `tmlp` of `tumorbench networks unet-ab`. Measured
    /// (session 5): all 18 blocks' projections took ~0.4 ms of a step either way (`resnet-phases`), step
    /// ratio within noise; left off.
    nonisolated(unsafe) public static var batchedTimeMLP = false

    /// Bits of the fused ResnetBlock path (`ResnetBlock.fused`: AVX-512 only, blocks whose two (1,3,3)
    /// convolutions take the direct kernels, i.e. the 24² and 12² levels; the others keep the code below):
    /// 1: the convolutions gather each output plane's GroupNorm partial sums as they write it (no
    /// statistics read pass); 4: the second Block's GroupNorm + SiLU + residual (the input, or its 1×1
    /// res_conv computed in the same pass) in one pass in place over conv2's output; 8 (with 1 or 4): the
    /// up blocks' conv1 and res_conv read [h, skip] in place (no concatenation). 0: the previous code.
    /// Default 13 (all three). Knob `fres` of `tumorbench networks unet-ab`; measured in session 6
    /// (Benchmarks/results/networks.md): ResnetBlock time outside the convolutions 8.3 → 5.9 ms per step,
    /// step CPU samples −2 to −3%, paired step ratios 0.95–1.00 under load 4–6. (Bit 2, the first Block's
    /// GroupNorm + SiLU applied by the second convolution while it fills its input planes, measured slower
    /// and was removed.)
    nonisolated(unsafe) public static var fusedResnet = 13

    /// Whether `conv` on `channels` × `spatial` inputs runs on the direct AVX-512 kernels (`directConvolution`).
    static func takesDirect(_ conv: Conv, channels: Int, spatial: [Int]) -> Bool {
        guard KernelContext.useAVX512, spatial.count == 3, conv.weight.shape[1] == channels else { return false }
        let k = Array(conv.weight.shape[2...]), s = conv.stride, p = conv.pad
        var o = [0, 0, 0]
        for i in 0..<3 { o[i] = (spatial[i] + 2 * p[i] - k[i]) / s[i] + 1 }
        let outDims = (o[0], o[1], o[2])
        return !Tensor.conv3dWholeIm2col(outDims: outDims, kernel: k, channels: channels)
            && Tensor.conv3dDirect(outDims: outDims, kernel: k, stride: s, channels: channels, outChannels: conv.weight.shape[0])
    }

    /// `conv(a)` or `conv(concat([a, b], axis: 1))` (both inputs read in place) on the direct AVX-512
    /// kernels, or nil when it does not take them. `statistics` (stride 1 only): also returns each output
    /// plane's partial sums (`DirectConvolution.Fusion.statistics`, image after image).
    static func directConvolution(_ a: Tensor, _ b: Tensor?, _ conv: Conv, statistics: Bool = false) -> (Tensor, [Float]?)? {
        guard a.rank == 5 else { return nil }
        if let b { guard b.rank == 5, a.shape[0] == b.shape[0], Array(a.shape[2...]) == Array(b.shape[2...]) else { return nil } }
        let w = conv.weight
        let (n, c1, c2, cout) = (a.shape[0], a.shape[1], b?.shape[1] ?? 0, w.shape[0])
        let cin = c1 + c2
        let k = Array(w.shape[2...]), s = conv.stride, p = conv.pad
        guard takesDirect(conv, channels: cin, spatial: Array(a.shape[2...])) else { return nil }
        guard !statistics || s == [1, 1, 1] else { return nil }
        var o = [0, 0, 0]
        for i in 0..<3 { o[i] = (a.shape[2 + i] + 2 * p[i] - k[i]) / s[i] + 1 }
        let outDims = (o[0], o[1], o[2])
        let inSpatial = a.spatialCount, outSpatial = o[0] * o[1] * o[2]
        var out = Tensor(uninitialized: [n, cout] + o)
        var moments = [Float](repeating: 0, count: statistics ? 2 * n * cout * o[0] : 0)
        if b != nil { concatFreeConvolutions += 1 }
        a.withPointer { xa in w.withPointer { wp in out.withMutablePointer { y in moments.withUnsafeMutableBufferPointer { mp in
            let bp = conv.bias?.withPointer { $0 }   // held by `conv`
            let xb = b?.withPointer { $0 }           // held by the caller
            for i in 0..<n {
                let fusion = DirectConvolution.Fusion(statistics: statistics ? mp.baseAddress! + 2 * i * cout * o[0] : nil)
                DirectConvolution.conv3d(input: xa + i * c1 * inSpatial, channels: cin, inputDims: (a.shape[2], a.shape[3], a.shape[4]),
                                         weight: wp, outChannels: cout, kernel: (k[0], k[1], k[2]), stride: (s[0], s[1], s[2]),
                                         front: (p[0], p[1], p[2]), replicate: false, bias: bp, output: y + i * cout * outSpatial,
                                         outputDims: outDims, threads: KernelContext.threads,
                                         secondInput: xb.map { $0 + i * c2 * inSpatial }, firstChannels: c1, fusion: fusion)
            }
        }}}}
        return (out, statistics ? moments : nil)
    }

    /// How many ResnetBlocks ran the fused path so far in this process (for tests).
    nonisolated(unsafe) public private(set) static var fusedBlocks = 0

    /// How many convolutions ran concat-free so far in this process (for tests).
    nonisolated(unsafe) public private(set) static var concatFreeConvolutions = 0

    /// Sets the direct convolution's switches (`DirectConvolution.setVariant`, bits 1–16) and
    /// `concatFreeSkips` (bit 32) at once: the `dconv` knob of `tumorbench networks unet-ab`
    /// (0: the previous code, `defaultConvolutionVariant`: the defaults).
    public static func setConvolutionVariant(_ v: Int) {
        DirectConvolution.setVariant(v & 31)
        concatFreeSkips = v & 32 != 0
    }
    public static let defaultConvolutionVariant = DirectConvolution.defaultVariant

    /// `conv(concat([a, b], axis: 1))` with both inputs read in place, when `concatFreeSkips` is on and the
    /// convolution takes the direct AVX-512 kernels (the same floats as on the concatenation); else nil.
    static func directConvolutionOfConcat(_ a: Tensor, _ b: Tensor, _ conv: Conv) -> Tensor? {
        guard concatFreeSkips else { return nil }
        return directConvolution(a, b, conv)?.0
    }

    /// A 1×1×1 convolution of concat([a, b], axis: 1): bias, then W[:, ..<Ca]·a and W[:, Ca...]·b accumulated
    /// (two single-threaded GEMMs per worker over its columns, like `Tensor.pointwiseConv3d`).
    static func pointwiseOfConcat(_ a: Tensor, _ b: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let (n, c1, c2, cout) = (a.shape[0], a.shape[1], b.shape[1], weight.shape[0])
        let cin = c1 + c2, s = a.spatialCount
        precondition(weight.shape[1] == cin && b.spatialCount == s && b.shape[0] == n,
                     "pointwiseOfConcat: \(a.shape) + \(b.shape) with weight \(weight.shape)")
        var out = Tensor(uninitialized: [n, cout] + Array(a.shape[2...]))
        guard n > 0, cout > 0, s > 0 else { return out }
        let workers = max(1, min(KernelContext.threads, s / 256))
        let chunk = ((s + workers - 1) / workers + 15) / 16 * 16
        let saved = BLASThreads.count
        if workers > 1 && saved != 1 { BLASThreads.count = 1 }
        defer { if workers > 1 && saved != 1 { BLASThreads.count = saved } }
        a.withPointer { xa in b.withPointer { xb in weight.withPointer { w in out.withMutablePointer { y in
            let bp = bias?.withPointer { $0 }   // held by the caller
            let work = { (worker: Int) in
                let j0 = worker * chunk, j1 = min(s, j0 + chunk)
                guard j1 > j0 else { return }
                for i in 0..<n {
                    let yb = y + i * cout * s + j0
                    for co in 0..<cout { (yb + co * s).update(repeating: bp?[co] ?? 0, count: j1 - j0) }
                    if c1 > 0 {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(j1 - j0), Int32(c1),
                                    1, w, Int32(cin), xa + i * c1 * s + j0, Int32(s), 1, yb, Int32(s))
                    }
                    if c2 > 0 {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(j1 - j0), Int32(c2),
                                    1, w + c1, Int32(cin), xb + i * c2 * s + j0, Int32(s), 1, yb, Int32(s))
                    }
                }
            }
            if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        }}}}
        return out
    }

    /// ε prediction for x (B, out, D, H, W) with condition (B, in − out, D, H, W) at `timesteps` (one per batch element).
    /// H and W must be divisible by 2^(levels − 1).
    public func callAsFunction(_ x: Tensor, cond: Tensor, timesteps: [Float], taps: Taps? = nil) -> Tensor {
        precondition(x.rank == 5 && cond.rank == 5 && x.shape[1] + cond.shape[1] == architecture.inputChannels,
                     "Unet3D: x \(x.shape) and cond \(cond.shape) must give \(architecture.inputChannels) channels")
        return forward(x, timesteps: timesteps, taps: taps) {
            Unet3D.directConvolutionOfConcat(x, cond, initConv) ?? initConv(Tensor.concat([x, cond], axis: 1))
        }
    }

    /// The network after its input: `initConvolution` computes init_conv's output (inside the step's
    /// single-threaded-BLAS scope), the rest is the same for `callAsFunction(_:cond:)` and `(_:prepared:)`.
    func forward(_ x: Tensor, timesteps: [Float], taps: Taps?, initConvolution: () -> Tensor) -> Tensor {
        precondition(timesteps.count == x.shape[0], "Unet3D: \(timesteps.count) timesteps for batch \(x.shape[0])")
        let F = x.shape[2]
        let bias = AttentionOps.relativePositionBias(table: relPosTable, tokens: F, maxDistance: maxDistance)
        let scratch = scratchPool.take()
        defer { scratchPool.give(scratch) }
        let savedBLAS = BLASThreads.count
        let singleBLAS = Unet3D.singleThreadedBLAS && KernelContext.threads > 1 && savedBLAS != 1
        if singleBLAS { BLASThreads.count = 1 }
        defer { if singleBLAS { BLASThreads.count = savedBLAS } }
        var h = initConvolution()
        taps?("init_conv", h)
        let r = h
        h = initTemporal(h, bias: bias, scratch: scratch)
        taps?("init_temporal_attn", h)
        let t = timeEmbedding(timesteps)
        taps?("time_mlp", t)
        let tp: TimeProjections? = Unet3D.batchedTimeMLP ? timeProjections(t) : nil
        var skips: [Tensor] = []
        for (i, level) in downs.enumerated() {
            h = level.block1(h, t, tp); taps?("downs.\(i).0", h)
            h = level.block2(h, t, tp); taps?("downs.\(i).1", h)
            h = level.spatial(h, scratch: scratch); taps?("downs.\(i).2", h)
            h = level.temporal(h, bias: bias, scratch: scratch); taps?("downs.\(i).3", h)
            skips.append(h)
            if let down = level.resample { h = down(h); taps?("downs.\(i).4", h) }
        }
        h = mid1(h, t, tp); taps?("mid_block1", h)
        h = midSpatial(h, bias: nil, scratch: scratch); taps?("mid_spatial_attn", h)
        h = midTemporal(h, bias: bias, scratch: scratch); taps?("mid_temporal_attn", h)
        h = mid2(h, t, tp); taps?("mid_block2", h)
        for (i, level) in ups.enumerated() {
            h = level.block1(h, skips.removeLast(), t, tp); taps?("ups.\(i).0", h)
            h = level.block2(h, t, tp); taps?("ups.\(i).1", h)
            h = level.spatial(h, scratch: scratch); taps?("ups.\(i).2", h)
            h = level.temporal(h, bias: bias, scratch: scratch); taps?("ups.\(i).3", h)
            if let (w, b) = level.upsample {
                h = h.convTranspose3d(weight: w, bias: b, stride: [1, 2, 2], padding: [0, 1, 1])
                taps?("ups.\(i).4", h)
            }
        }
        h = finalBlock(h, r, nil)
        h = finalConv(h)
        taps?("final_conv", h)
        return h
    }
}
