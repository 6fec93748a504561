import KernelsAVX512

/// 3D convolution (PyTorch `Conv3d` cross-correlation), NCDHW.
extension Tensor {
    /// `weight` is [Cout, Cin/groups, kD, kH, kW]; `bias` is [Cout] or nil; `stride` per dim (D, H, W);
    /// `padding` per dim as (front, back) with mode zero or replicate (`Padding3d.same` gives the
    /// reference's `SamePadConv3d`). Output size per dim: (in + front + back − k) / stride + 1.
    /// Lowered to `cblas_sgemm` on tiles of im2col columns; peak extra memory is one tile
    /// (`KernelContext.im2colTileBytes`, at least Cin/groups·k³ × one output row of floats).
    public func conv3d(weight: Tensor, bias: Tensor? = nil, stride: [Int] = [1, 1, 1],
                       padding: Padding3d = .none, groups: Int = 1) -> Tensor {
        precondition(rank == 5 && weight.rank == 5, "conv3d: input \(shape) and weight \(weight.shape) must be 5-D")
        precondition(stride.count == 3 && stride.allSatisfy { $0 > 0 }, "conv3d: stride \(stride) must be 3 positive values")
        let (n, cin) = (shape[0], shape[1])
        let cout = weight.shape[0]
        precondition(groups > 0 && cin % groups == 0 && cout % groups == 0 && weight.shape[1] == cin / groups,
                     "conv3d: input \(shape), weight \(weight.shape), groups \(groups) do not match")
        precondition(bias == nil || bias!.count == cout, "conv3d: bias \(bias!.shape) for \(cout) output channels")
        let kernel = Array(weight.shape[2...])
        let dims = (0..<3).map {
            GatherDim.convolution(size: shape[2 + $0], kernel: kernel[$0], stride: stride[$0],
                                  front: padding.front[$0], back: padding.back[$0], mode: padding.mode)
        }
        let outDims = (dims[0].count, dims[1].count, dims[2].count)
        let outSpatial = outDims.0 * outDims.1 * outDims.2
        let inSpatial = spatialCount
        var out = Tensor(uninitialized: [n, cout, outDims.0, outDims.1, outDims.2])
        out.withMutablePointer { KernelContext.adviseHugePages($0, count: n * cout * outSpatial) }
        let cinG = cin / groups, coutG = cout / groups
        let (kD, kH, kW) = (kernel[0], kernel[1], kernel[2])
        if Tensor.conv3dWholeIm2col(outDims: outDims, kernel: kernel, channels: cinG) {
            let inDims = (shape[2], shape[3], shape[4])
            withPointer { x in weight.withPointer { w in out.withMutablePointer { y in
                let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
                for b in 0..<n { for g in 0..<groups {
                    wholeIm2colConvolution(input: x + (b * cin + g * cinG) * inSpatial, channels: cinG, inputDims: inDims,
                                           dims: dims, weights: w + g * coutG * cinG * kD * kH * kW, outChannels: coutG,
                                           bias: bp.map { $0 + g * coutG }, output: y + (b * cout + g * coutG) * outSpatial)
                }}
            }}}
            return out
        }
        if Tensor.conv3dDirect(outDims: outDims, kernel: kernel, stride: stride, channels: cinG, outChannels: coutG) {
            let inDims = (shape[2], shape[3], shape[4])
            let kVol = kD * kH * kW
            withPointer { x in weight.withPointer { w in out.withMutablePointer { y in
                let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
                for b in 0..<n { for g in 0..<groups {
                    DirectConvolution.conv3d(
                        input: x + (b * cin + g * cinG) * inSpatial, channels: cinG, inputDims: inDims,
                        weight: w + g * coutG * cinG * kVol, outChannels: coutG, kernel: (kD, kH, kW),
                        stride: (stride[0], stride[1], stride[2]),
                        front: (padding.front[0], padding.front[1], padding.front[2]),
                        replicate: padding.mode == .replicate, bias: bp.map { $0 + g * coutG },
                        output: y + (b * cout + g * coutG) * outSpatial, outputDims: outDims, threads: KernelContext.threads)
                }}
            }}}
            return out
        }
        // Tap stacking (see gatherConvolution) pays off when D and H are not strided and Cin·kW is
        // not tiny; otherwise use the plain im2col lowering.
        let stacked = stride[0] == 1 && stride[1] == 1 && cinG * kW >= 8
        let kSize = stacked ? cinG * kW : cinG * kD * kH * kW
        let m = stacked ? kD * kH * coutG : coutG
        var a: [Float]
        if stacked {
            // A[g][((td·kH + th)·coutG + co), ci·kW + tw] = w[g·coutG + co, ci, td, th, tw].
            let wk = weight.scalars
            a = [Float](repeating: 0, count: max(1, cout * cinG * kD * kH * kW))
            for g in 0..<groups { for co in 0..<coutG { for ci in 0..<cinG { for td in 0..<kD { for th in 0..<kH {
                let src: Int = ((((g * coutG + co) * cinG + ci) * kD + td) * kH + th) * kW
                let row: Int = ((g * kD + td) * kH + th) * coutG + co
                for tw in 0..<kW { a[row * kSize + ci * kW + tw] = wk[src + tw] }
            }}}}}
        } else {
            a = weight.scalars
        }
        withPointer { x in
            a.withUnsafeBufferPointer { ap in
                out.withMutablePointer { y in
                    let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
                    for b in 0..<n {
                        for g in 0..<groups {
                            let input = x + (b * cin + g * cinG) * inSpatial
                            let weights = ap.baseAddress! + g * m * kSize
                            let output = y + (b * cout + g * coutG) * outSpatial
                            let inDims = (shape[2], shape[3], shape[4])
                            if stacked {
                                gatherConvolution(input: input, channels: cinG, inputDims: inDims, dims: dims,
                                                  weights: weights, outChannels: coutG, bias: bp.map { $0 + g * coutG },
                                                  output: output, outputDims: outDims)
                            } else {
                                im2colConvolution(input: input, channels: cinG, inputDims: inDims, dims: dims,
                                                  weights: weights, outChannels: coutG, bias: bp.map { $0 + g * coutG },
                                                  output: output, outputDims: outDims)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Transposed 3D convolution (PyTorch `ConvTranspose3d`): `weight` is [Cin, Cout/groups, kD, kH, kW];
    /// output size per dim: (in − 1)·stride − 2·padding + k + outputPadding. Computed in gather form:
    /// one stride-1 convolution per output phase (stride^3 of them), each lowered to `cblas_sgemm`
    /// on im2col tiles (no zero-inflated input, no scatter-add).
    public func convTranspose3d(weight: Tensor, bias: Tensor? = nil, stride: [Int],
                                padding: [Int] = [0, 0, 0], outputPadding: [Int] = [0, 0, 0],
                                groups: Int = 1) -> Tensor {
        precondition(rank == 5 && weight.rank == 5, "convTranspose3d: input \(shape) and weight \(weight.shape) must be 5-D")
        precondition(stride.count == 3 && padding.count == 3 && outputPadding.count == 3
                     && stride.allSatisfy { $0 > 0 } && padding.allSatisfy { $0 >= 0 },
                     "convTranspose3d: stride \(stride), padding \(padding), outputPadding \(outputPadding)")
        let (n, cin) = (shape[0], shape[1])
        precondition(groups > 0 && cin % groups == 0 && weight.shape[0] == cin,
                     "convTranspose3d: input \(shape), weight \(weight.shape), groups \(groups) do not match")
        let coutG = weight.shape[1], cout = coutG * groups, cinG = cin / groups
        precondition(bias == nil || bias!.count == cout, "convTranspose3d: bias \(bias!.shape) for \(cout) output channels")
        let kernel = Array(weight.shape[2...])
        let inDims = Array(shape[2...])
        var outSizes = [0, 0, 0]
        for i in 0..<3 {
            let grown: Int = (inDims[i] - 1) * stride[i] + kernel[i]
            outSizes[i] = grown - 2 * padding[i] + outputPadding[i]
        }
        precondition(outSizes.allSatisfy { $0 > 0 }, "convTranspose3d: empty output \(outSizes) for input \(shape)")
        let outDims = (outSizes[0], outSizes[1], outSizes[2])
        let outSpatial = outSizes.reduce(1, *)
        let inSpatial = spatialCount
        var out = Tensor(uninitialized: [n, cout, outSizes[0], outSizes[1], outSizes[2]])
        out.withMutablePointer { KernelContext.adviseHugePages($0, count: n * cout * outSpatial) }
        if Tensor.convTranspose3dWholeIm2col(outSizes: outSizes, kernel: kernel, stride: stride, channels: cinG) {
            withPointer { x in weight.withPointer { w in out.withMutablePointer { y in
                for b in 0..<n { for g in 0..<groups {
                    Tensor.convTranspose3dPhasesWholeIm2col(
                        input: x + (b * cin + g * cinG) * inSpatial, channels: cinG, inputDims: inDims,
                        weight: w + g * cinG * coutG * kernel.reduce(1, *), weightOutChannels: coutG,
                        outChannels: coutG, kernel: kernel, stride: stride, padding: padding,
                        bias: bias.map { Array($0.scalars[(g * coutG)..<((g + 1) * coutG)]) },
                        output: y + (b * cout + g * coutG) * outSpatial, outSizes: outSizes,
                        weightOwner: weight.storage, weightOffset: g * cinG * coutG * kernel.reduce(1, *))
                }}
            }}}
            return out
        }
        if Tensor.convTranspose3dDirect(outSizes: outSizes, kernel: kernel, stride: stride) {
            let kVol = kernel.reduce(1, *)
            withPointer { x in weight.withPointer { w in out.withMutablePointer { y in
                let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
                for b in 0..<n { for g in 0..<groups {
                    DirectConvolution.convTranspose3d(
                        input: x + (b * cin + g * cinG) * inSpatial, channels: cinG, inputDims: (inDims[0], inDims[1], inDims[2]),
                        weight: w + g * cinG * coutG * kVol, weightOutChannels: coutG, outChannels: coutG,
                        kernel: (kernel[0], kernel[1], kernel[2]), stride: (stride[0], stride[1], stride[2]),
                        padding: (padding[0], padding[1], padding[2]), bias: bp.map { $0 + g * coutG },
                        output: y + (b * cout + g * coutG) * outSpatial, outputDims: outDims, threads: KernelContext.threads)
                }}
            }}}
            return out
        }
        let wk = weight.scalars
        let kVol = kernel.reduce(1, *)
        withPointer { x in
            out.withMutablePointer { y in
                for pd in 0..<stride[0] { for ph in 0..<stride[1] { for pw in 0..<stride[2] {
                    let phase = [pd, ph, pw]
                    let dims = (0..<3).map {
                        GatherDim.transposedPhase(inputSize: inDims[$0], outputSize: outSizes[$0], kernel: kernel[$0],
                                                  stride: stride[$0], padding: padding[$0], phase: phase[$0])
                    }
                    if dims.contains(where: { $0.count == 0 }) { continue }   // no output in this phase
                    let (tD, tH, tW) = (dims[0].taps, dims[1].taps, dims[2].taps)
                    let taps = tD * tH * tW
                    let kSize = cinG * tW, m = tD * tH * coutG
                    // A[g][((jd·tH + jh)·coutG + co), ci·tW + jw] = w[g·cinG + ci, co, pd + s·jd, ph + s·jh, pw + s·jw]
                    var a = [Float](repeating: 0, count: max(1, groups * coutG * cinG * taps))
                    for g in 0..<groups { for co in 0..<coutG { for ci in 0..<cinG {
                        for jd in 0..<tD { for jh in 0..<tH { for jw in 0..<tW {
                            let kd = pd + stride[0] * jd, kh = ph + stride[1] * jh, kw = pw + stride[2] * jw
                            let kOffset: Int = (kd * kernel[1] + kh) * kernel[2] + kw
                            let src: Int = ((g * cinG + ci) * coutG + co) * kVol + kOffset
                            let row: Int = ((g * tD + jd) * tH + jh) * coutG + co
                            a[row * kSize + ci * tW + jw] = wk[src]
                        }}}
                    }}}
                    let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
                    a.withUnsafeBufferPointer { ap in
                        for b in 0..<n {
                            for g in 0..<groups {
                                gatherConvolution(input: x + (b * cin + g * cinG) * inSpatial, channels: cinG,
                                                  inputDims: (inDims[0], inDims[1], inDims[2]), dims: dims,
                                                  weights: ap.baseAddress! + g * m * kSize, outChannels: coutG,
                                                  bias: bp.map { $0 + g * coutG },
                                                  output: y + (b * cout + g * coutG) * outSpatial, outputDims: outDims)
                            }
                        }
                    }
                }}}
            }
        }
        return out
    }

    /// Whether `conv3d(weight:bias:stride:padding:groups:)` with these arguments runs on the AVX-512
    /// direct kernels (true) or on an im2col + sgemm lowering (false: tiled, or the whole-output im2col
    /// of tiny planes), under the current `KernelContext` settings. For benchmarks and tests.
    public func conv3dTakesDirectPath(weight: Tensor, stride: [Int] = [1, 1, 1], padding: Padding3d = .none,
                                      groups: Int = 1) -> Bool {
        let kernel = Array(weight.shape[2...])
        var o = [0, 0, 0]
        for i in 0..<3 {
            let padded: Int = shape[2 + i] + padding.front[i] + padding.back[i]
            o[i] = (padded - kernel[i]) / stride[i] + 1
        }
        if Tensor.conv3dWholeIm2col(outDims: (o[0], o[1], o[2]), kernel: kernel, channels: shape[1] / groups) { return false }
        return Tensor.conv3dDirect(outDims: (o[0], o[1], o[2]), kernel: kernel, stride: stride,
                                   channels: shape[1] / groups, outChannels: weight.shape[0] / groups)
    }

    /// Whether `convTranspose3d(weight:bias:stride:padding:)` runs on the AVX-512 direct kernels.
    public func convTranspose3dTakesDirectPath(weight: Tensor, stride: [Int], padding: [Int] = [0, 0, 0],
                                               outputPadding: [Int] = [0, 0, 0]) -> Bool {
        let kernel = Array(weight.shape[2...])
        var o = [0, 0, 0]
        for i in 0..<3 {
            let grown: Int = (shape[2 + i] - 1) * stride[i] + kernel[i]
            o[i] = grown - 2 * padding[i] + outputPadding[i]
        }
        if Tensor.convTranspose3dWholeIm2col(outSizes: o, kernel: kernel, stride: stride, channels: shape[1]) { return false }
        return Tensor.convTranspose3dDirect(outSizes: o, kernel: kernel, stride: stride)
    }

    /// Whether the whole output is one im2col GEMM (`wholeIm2colConvolution`): planes of at most
    /// `KernelContext.wholeIm2colMaxPlane` positions whose whole im2col fits the workers' tile budget.
    static func conv3dWholeIm2col(outDims: (Int, Int, Int), kernel: [Int], channels: Int) -> Bool {
        if KernelContext.useAVX512 && KernelContext.forceDirectConvolution { return false }
        guard outDims.1 * outDims.2 <= KernelContext.wholeIm2colMaxPlane else { return false }
        return wholeIm2colFloats(channels: channels, kernel: kernel, outputDims: outDims) * 4
            <= KernelContext.threads * KernelContext.im2colTileBytes
    }

    static func conv3dDirect(outDims: (Int, Int, Int), kernel: [Int], stride: [Int], channels: Int, outChannels: Int) -> Bool {
        guard KernelContext.useAVX512 else { return false }
        if KernelContext.forceDirectConvolution { return true }
        if kernel == [1, 1, 1] && stride == [1, 1, 1] { return false }   // a plain GEMM, no gathering to save
        return directPays(outH: outDims.1, outW: outDims.2, pitch: outDims.2 + (kernel[2] + stride[2] - 1) / stride[2] - 1)
    }

    /// Whether `convTranspose3d` runs each output phase as one whole-output im2col GEMM: phase planes
    /// of at most `KernelContext.wholeIm2colMaxPlane` positions (the Unet's upsample from 3² planes,
    /// which ran at 12% of sgemm tap-stacked) whose im2col fits the workers' tile budget.
    static func convTranspose3dWholeIm2col(outSizes: [Int], kernel: [Int], stride: [Int], channels: Int) -> Bool {
        if KernelContext.useAVX512 && KernelContext.forceDirectConvolution { return false }
        let phase = (0..<3).map { (outSizes[$0] + stride[$0] - 1) / stride[$0] }
        let taps = (0..<3).map { (kernel[$0] + stride[$0] - 1) / stride[$0] }
        guard phase[1] * phase[2] <= KernelContext.wholeIm2colMaxPlane else { return false }
        return wholeIm2colFloats(channels: channels, kernel: taps, outputDims: (phase[0], phase[1], phase[2])) * 4
            <= KernelContext.threads * KernelContext.im2colTileBytes
    }

    /// One image and group of `convTranspose3d` through `wholeIm2colConvolution`, phase by phase: each
    /// phase's outputs (every stride-th position) are a stride-1 gather over its sub-kernel, computed
    /// into a scratch matrix and scattered into `output` with the bias. `weight` is [cin, weightOutChannels, k…].
    static func convTranspose3dPhasesWholeIm2col(input x: UnsafePointer<Float>, channels cin: Int, inputDims: [Int],
                                                 weight w: UnsafePointer<Float>, weightOutChannels: Int,
                                                 outChannels cout: Int, kernel: [Int], stride: [Int], padding: [Int],
                                                 bias: [Float]?, output y: UnsafeMutablePointer<Float>, outSizes: [Int],
                                                 weightOwner: AnyObject? = nil, weightOffset: Int = 0) {
        if TransposedPhaseWeights.enabled, let weightOwner {
            convTranspose3dPhasesCached(input: x, channels: cin, inputDims: inputDims, weight: w, weightOutChannels: weightOutChannels,
                                        outChannels: cout, kernel: kernel, stride: stride, padding: padding, bias: bias,
                                        output: y, outSizes: outSizes, weightOwner: weightOwner, weightOffset: weightOffset)
            return
        }
        let kVol = kernel.reduce(1, *)
        let outPlane = outSizes[1] * outSizes[2]
        let phases = transposedPhases(inputDims: inputDims, outSizes: outSizes, kernel: kernel, stride: stride, padding: padding)
        // Every phase's weights in one pass over `w` in its own order: A_p[co, (ci, jd, jh, jw)] =
        // w[ci, co, pd + sD·jd, ph + sH·jh, pw + sW·jw] (kernel tap (kd, kh, kw) belongs to phase
        // (kd mod sD, kh mod sH, kw mod sW) at (kd / sD, kh / sH, kw / sW)).
        let phaseTaps = phases.map { $0[0].taps * $0[1].taps * $0[2].taps }
        var phaseOffset = [Int](repeating: 0, count: phases.count + 1)
        for p in 0..<phases.count { phaseOffset[p + 1] = phaseOffset[p] + cout * cin * phaseTaps[p] }
        let aAll = UnsafeMutablePointer<Float>.allocate(capacity: max(1, phaseOffset[phases.count]))
        defer { aAll.deallocate() }
        var tapPhase = [Int](repeating: 0, count: kVol), tapPosition = [Int](repeating: 0, count: kVol)
        for kd in 0..<kernel[0] { for kh in 0..<kernel[1] { for kw in 0..<kernel[2] {
            let t = (kd * kernel[1] + kh) * kernel[2] + kw
            let p = ((kd % stride[0]) * stride[1] + kh % stride[1]) * stride[2] + kw % stride[2]
            tapPhase[t] = p
            tapPosition[t] = ((kd / stride[0]) * phases[p][1].taps + kh / stride[1]) * phases[p][2].taps + kw / stride[2]
        }}}
        for ci in 0..<cin { for co in 0..<cout {
            let src = w + (ci * weightOutChannels + co) * kVol
            for t in 0..<kVol {
                let p = tapPhase[t]
                aAll[phaseOffset[p] + (co * cin + ci) * phaseTaps[p] + tapPosition[t]] = src[t]
            }
        }}
        for (pi, dims) in phases.enumerated() {
            let n = dims[0].count * dims[1].count * dims[2].count
            guard n > 0 else { continue }
            let taps = phaseTaps[pi]
            let a = aAll + phaseOffset[pi]
            let result = UnsafeMutablePointer<Float>.allocate(capacity: cout * n)
            defer { result.deallocate() }
            if taps == 0 || cin == 0 {
                result.update(repeating: 0, count: cout * n)   // no kernel tap reaches this phase: bias only
            } else {
                wholeIm2colConvolution(input: x, channels: cin, inputDims: (inputDims[0], inputDims[1], inputDims[2]),
                                       dims: dims, weights: a, outChannels: cout, bias: nil, output: result)
            }
            let (cD, cH, cW) = (dims[0].coordinates, dims[1].coordinates, dims[2].coordinates)
            KernelContext.parallelFor(cout) { range in
                for co in range {
                    let b = bias?[co] ?? 0
                    var src = result + co * n
                    let dst = y + co * outSizes[0] * outPlane
                    for od in cD { for oh in cH {
                        let row = dst + od * outPlane + oh * outSizes[2]
                        for j in 0..<cW.count { row[cW[j]] = src[j] + b }
                        src += cW.count
                    }}
                }
            }
        }
    }

    /// The stride-phase decomposition of a transposed convolution: for each output phase (pd, ph, pw),
    /// the gather geometry along D, H and W.
    static func transposedPhases(inputDims: [Int], outSizes: [Int], kernel: [Int], stride: [Int], padding: [Int]) -> [[GatherDim]] {
        var phases: [[GatherDim]] = []
        for pd in 0..<stride[0] { for ph in 0..<stride[1] { for pw in 0..<stride[2] {
            let phase = [pd, ph, pw]
            phases.append((0..<3).map {
                GatherDim.transposedPhase(inputSize: inputDims[$0], outputSize: outSizes[$0], kernel: kernel[$0],
                                          stride: stride[$0], padding: padding[$0], phase: phase[$0])
            })
        }}}
        return phases
    }

    /// `convTranspose3dPhasesWholeIm2col` with the phase weight matrices kept per weight tensor
    /// (`TransposedPhaseWeights`; repacked through pointers on a miss) and one parallel pass writing
    /// every phase's outputs at the end instead of one per phase. The same floats.
    static func convTranspose3dPhasesCached(input x: UnsafePointer<Float>, channels cin: Int, inputDims: [Int],
                                            weight w: UnsafePointer<Float>, weightOutChannels: Int,
                                            outChannels cout: Int, kernel: [Int], stride: [Int], padding: [Int],
                                            bias: [Float]?, output y: UnsafeMutablePointer<Float>, outSizes: [Int],
                                            weightOwner: AnyObject, weightOffset: Int) {
        let kVol = kernel.reduce(1, *)
        let outPlane = outSizes[1] * outSizes[2]
        let phases = transposedPhases(inputDims: inputDims, outSizes: outSizes, kernel: kernel, stride: stride, padding: padding)
        let phaseTaps = phases.map { $0[0].taps * $0[1].taps * $0[2].taps }
        var phaseOffset = [Int](repeating: 0, count: phases.count + 1)
        for p in 0..<phases.count { phaseOffset[p + 1] = phaseOffset[p] + cout * cin * phaseTaps[p] }
        let key = TransposedPhaseWeights.Key(storage: ObjectIdentifier(weightOwner), offset: weightOffset,
                                             shape: [cin, weightOutChannels, cout] + kernel + stride + padding + inputDims + outSizes)
        let packed: TransposedPhaseWeights
        if let hit = TransposedPhaseWeights.lookup(key) {
            packed = hit
        } else {
            packed = TransposedPhaseWeights(count: phaseOffset[phases.count])
            // A_p[co, (ci, jd, jh, jw)] = w[ci, co, pd + sD·jd, ph + sH·jh, pw + sW·jw]: kernel tap t goes to
            // phase p(t) at position q(t), i.e. to index base[t] + (co·cin + ci)·phaseTaps[p(t)].
            var base = [Int](repeating: 0, count: kVol), step = [Int](repeating: 0, count: kVol)
            for kd in 0..<kernel[0] { for kh in 0..<kernel[1] { for kw in 0..<kernel[2] {
                let t = (kd * kernel[1] + kh) * kernel[2] + kw
                let p = ((kd % stride[0]) * stride[1] + kh % stride[1]) * stride[2] + kw % stride[2]
                base[t] = phaseOffset[p] + ((kd / stride[0]) * phases[p][1].taps + kh / stride[1]) * phases[p][2].taps + kw / stride[2]
                step[t] = phaseTaps[p]
            }}}
            let a = packed.pointer
            base.withUnsafeBufferPointer { bp in step.withUnsafeBufferPointer { sp in
                for co in 0..<cout { for ci in 0..<cin {
                    let src = w + (ci * weightOutChannels + co) * kVol, row = co * cin + ci
                    for t in 0..<kVol { a[bp[t] + row * sp[t]] = src[t] }
                }}
            }}
            TransposedPhaseWeights.insert(key, owner: weightOwner, packed)
        }
        // Every phase's [cout × n_p] result in one buffer, written out in one parallel pass at the end.
        let counts = phases.map { $0[0].count * $0[1].count * $0[2].count }
        var resultOffset = [Int](repeating: 0, count: phases.count + 1)
        for p in 0..<phases.count { resultOffset[p + 1] = resultOffset[p] + cout * counts[p] }
        let result = UnsafeMutablePointer<Float>.allocate(capacity: max(1, resultOffset[phases.count]))
        defer { result.deallocate() }
        withExtendedLifetime(packed) {
            for (pi, dims) in phases.enumerated() where counts[pi] > 0 {
                let r = result + resultOffset[pi]
                if phaseTaps[pi] == 0 || cin == 0 {
                    r.update(repeating: 0, count: cout * counts[pi])   // no kernel tap reaches this phase: bias only
                } else {
                    wholeIm2colConvolution(input: x, channels: cin, inputDims: (inputDims[0], inputDims[1], inputDims[2]),
                                           dims: dims, weights: packed.pointer + phaseOffset[pi], outChannels: cout, bias: nil, output: r)
                }
            }
        }
        // Each phase's output offsets within a channel, flattened in its result's column order.
        let scatter: [[Int32]] = phases.enumerated().map { pi, dims in
            var list = [Int32](); list.reserveCapacity(counts[pi])
            for od in dims[0].coordinates { for oh in dims[1].coordinates { for ow in dims[2].coordinates {
                list.append(Int32(od * outPlane + oh * outSizes[2] + ow))
            }}}
            return list
        }
        let outVolume = outSizes[0] * outPlane
        KernelContext.parallelFor(cout) { range in
            for pi in 0..<phases.count where counts[pi] > 0 {
                scatter[pi].withUnsafeBufferPointer { index in
                    let n = counts[pi]
                    for co in range {
                        let b = bias?[co] ?? 0
                        let src = result + resultOffset[pi] + co * n
                        let dst = y + co * outVolume
                        for j in 0..<n { dst[Int(index[j])] = src[j] + b }
                    }
                }
            }
        }
    }

    static func convTranspose3dDirect(outSizes: [Int], kernel: [Int], stride: [Int]) -> Bool {
        guard KernelContext.useAVX512 else { return false }
        if KernelContext.forceDirectConvolution { return true }
        let phaseH = (outSizes[1] + stride[1] - 1) / stride[1], phaseW = (outSizes[2] + stride[2] - 1) / stride[2]
        let tapsW = (kernel[2] + stride[2] - 1) / stride[2]
        return directPays(outH: phaseH, outW: phaseW, pitch: phaseW + tapsW)
    }

    /// Whether the direct AVX-512 kernels beat the GEMM lowering for an output plane of outH × outW
    /// computed over rows of `pitch` floats in tiles of 48: they compute every column of the pitch and
    /// whole tiles, so tiny planes (the Unet's 3×3 level: 48 positions computed for 9) waste work and
    /// stay on GEMM. At most 1.5× the useful work: the Unet's (1,3,3) convolutions measured (session 3,
    /// Benchmarks/results/kernels.md) 1.1–1.6× faster direct on 24² and 12² planes, level with GEMM
    /// on 6² (48 computed for 36), and 3–6× slower on 3² planes.
    static func directPays(outH: Int, outW: Int, pitch: Int) -> Bool {
        let computed = (outH * pitch + 47) / 48 * 48
        return computed * 2 <= outH * outW * 3
    }
}
