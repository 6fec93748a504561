import KernelsAVX512

/// The condition's share of the init conv, computed once per sampling run.
///
/// `init_conv` is a (1,k,k) convolution of concat([x, cond]); a sampler calls the Unet with the same
/// `cond` at every step, so `W[:, C_x...] ⊛ cond + bias` (9 of the 17 input channels' FLOPs) is the
/// same at every step. `prepare(cond:)` computes it once; each step then convolves only x with
/// `W[:, ..<C_x]` and adds the prepared share while its output is copied out
/// (`DirectConvolution.conv3d(addend:)`, AVX-512) or after the convolution (portable path). The same
/// products as the convolution of the concatenation, summed in another order.
extension Unet3D {
    /// Whether `prepare(cond:)` precomputes the condition's share of the init conv (true, default) or
    /// only keeps the condition, so that every step convolves the concatenation as
    /// `callAsFunction(_:cond:timesteps:)` does (false: the previous code). Read when preparing.
    /// Knob `condshare` of `tumorbench networks unet-ab`.
    nonisolated(unsafe) public static var reuseConditionShare = true

    /// A condition made ready for many steps of one sampling run: see `prepare(cond:)`.
    public struct PreparedCondition {
        /// The condition (B, C_cond, D, H, W).
        public let cond: Tensor
        /// `W[:, C_x...] ⊛ cond + bias` (B, dim, D, H, W); nil when `reuseConditionShare` was off.
        let initShare: Tensor?
        /// Whether the steps reuse a precomputed share of the init conv.
        public var isPrecomputed: Bool { initShare != nil }
    }

    /// Prepares `cond` (B, in − out, D, H, W) for `callAsFunction(_:prepared:timesteps:)`: with
    /// `reuseConditionShare`, convolves it with init_conv's condition weights plus the bias (once).
    public func prepare(cond: Tensor) -> PreparedCondition {
        precondition(cond.rank == 5 && cond.shape[1] == initConvCond.shape[1],
                     "Unet3D.prepare: cond \(cond.shape) must have \(initConvCond.shape[1]) channels")
        guard Unet3D.reuseConditionShare else { return PreparedCondition(cond: cond, initShare: nil) }
        let pad = initConv.pad
        let share = cond.conv3d(weight: initConvCond, bias: initConv.bias, stride: initConv.stride,
                                padding: Padding3d(front: pad, back: pad, mode: .zero))
        return PreparedCondition(cond: cond, initShare: share)
    }

    /// ε prediction for x (B, out, D, H, W) with a prepared condition: the same as
    /// `callAsFunction(x, cond: prepared.cond, timesteps:)` up to float summation order.
    public func callAsFunction(_ x: Tensor, prepared: PreparedCondition, timesteps: [Float], taps: Taps? = nil) -> Tensor {
        guard let share = prepared.initShare else { return self(x, cond: prepared.cond, timesteps: timesteps, taps: taps) }
        precondition(x.rank == 5 && x.shape[1] == initConvX.shape[1] && x.shape[0] == prepared.cond.shape[0]
                     && Array(x.shape[2...]) == Array(prepared.cond.shape[2...]),
                     "Unet3D: x \(x.shape) does not fit the prepared condition \(prepared.cond.shape) (\(initConvX.shape[1]) channels)")
        return forward(x, timesteps: timesteps, taps: taps) { initConvolution(x, adding: share) }
    }

    /// `W[:, ..<C_x] ⊛ x + share`: on the AVX-512 direct kernels with the share added at copy-out when the
    /// convolution takes them, else a convolution without bias and an add.
    func initConvolution(_ x: Tensor, adding share: Tensor) -> Tensor {
        let w = initConvX
        let k = Array(w.shape[2...]), s = initConv.stride, p = initConv.pad
        let (n, cin, cout) = (x.shape[0], x.shape[1], w.shape[0])
        var o = [0, 0, 0]
        for i in 0..<3 { o[i] = (x.shape[2 + i] + 2 * p[i] - k[i]) / s[i] + 1 }
        precondition(share.shape == [n, cout] + o, "Unet3D: prepared init-conv share \(share.shape) for output \([n, cout] + o)")
        let outDims = (o[0], o[1], o[2])
        if !Tensor.conv3dWholeIm2col(outDims: outDims, kernel: k, channels: cin),
           Tensor.conv3dDirect(outDims: outDims, kernel: k, stride: s, channels: cin, outChannels: cout) {
            let inSpatial = x.spatialCount, outSpatial = o[0] * o[1] * o[2]
            var out = Tensor(uninitialized: [n, cout] + o)
            x.withPointer { xp in w.withPointer { wp in share.withPointer { sp in out.withMutablePointer { y in
                for i in 0..<n {
                    DirectConvolution.conv3d(input: xp + i * cin * inSpatial, channels: cin, inputDims: (x.shape[2], x.shape[3], x.shape[4]),
                                             weight: wp, outChannels: cout, kernel: (k[0], k[1], k[2]), stride: (s[0], s[1], s[2]),
                                             front: (p[0], p[1], p[2]), replicate: false, bias: nil, output: y + i * cout * outSpatial,
                                             outputDims: outDims, threads: KernelContext.threads,
                                             addend: sp + i * cout * outSpatial)
                }
            }}}}
            return out
        }
        var out = x.conv3d(weight: w, bias: nil, stride: s, padding: Padding3d(front: p, back: p, mode: .zero))
        out.add(share)
        return out
    }
}
