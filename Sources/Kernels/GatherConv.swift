import COpenBLAS

/// One spatial dim of a gather-form convolution: for each of `coordinates.count` output positions
/// and each of `taps` kernel taps, the input index read (or -1 for a zero).
struct GatherDim {
    /// Output coordinate (in the full output) of each position of this (sub-)grid.
    var coordinates: [Int]
    var taps: Int
    /// `[position * taps + tap]` → input index, or -1 for a zero.
    var table: [Int32]

    var count: Int { coordinates.count }

    /// A plain (not transposed) convolution dim: output `o`, tap `k` reads `o·stride − front + k`,
    /// clamped (replicate) or zero outside `0..<size`.
    static func convolution(size: Int, kernel: Int, stride: Int, front: Int, back: Int,
                            mode: PaddingMode) -> GatherDim {
        let out = (size + front + back - kernel) / stride + 1
        precondition(out > 0, "convolution: kernel \(kernel) larger than padded size \(size + front + back)")
        var table = [Int32](repeating: -1, count: out * kernel)
        for o in 0..<out {
            for k in 0..<kernel {
                let i = o * stride - front + k
                if i >= 0 && i < size { table[o * kernel + k] = Int32(i) }
                else if mode == .replicate { table[o * kernel + k] = Int32(min(max(i, 0), size - 1)) }
            }
        }
        return GatherDim(coordinates: Array(0..<out), taps: kernel, table: table)
    }

    /// The outputs `o` of a transposed convolution with `(o + padding) % stride == phase`; their taps
    /// are kernel indices `phase + stride·j` reading input `(o + padding − phase)/stride − j`.
    static func transposedPhase(inputSize: Int, outputSize: Int, kernel: Int, stride: Int,
                                padding: Int, phase: Int) -> GatherDim {
        let taps = phase < kernel ? (kernel - phase + stride - 1) / stride : 0
        var coords: [Int] = []
        var o0 = ((phase - padding) % stride + stride) % stride
        while o0 < outputSize { coords.append(o0); o0 += stride }
        var table = [Int32](repeating: -1, count: coords.count * taps)
        for (p, o) in coords.enumerated() {
            let base = (o + padding - phase) / stride
            for j in 0..<taps {
                let i = base - j
                if i >= 0 && i < inputSize { table[p * taps + j] = Int32(i) }
            }
        }
        return GatherDim(coordinates: coords, taps: taps, table: table)
    }

    var isIdentity: Bool { coordinates.enumerated().allSatisfy { $0.offset == $0.element } }
}

/// Gather-form convolution of one image and one group:
/// `out[co, grid(p)] (+)= Σ_{ci,t} A[co, (ci,t)] · x[ci, table(p,t)]`, lowered to `cblas_sgemm` over
/// tiles of im2col columns (never the whole im2col matrix). `dims` are D, H, W.
/// Peak extra memory: one column tile (≤ `KernelContext.im2colTileBytes`, at least one output row)
/// plus, when the grid is not the whole output, a result tile of `cout` × columns.
func gatherConvolution(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                       dims: [GatherDim], weights a: UnsafePointer<Float>, outChannels cout: Int,
                       output: UnsafeMutablePointer<Float>, outputDims: (Int, Int, Int), accumulate: Bool) {
    let (dd, dh, dw) = (dims[0], dims[1], dims[2])
    let taps = dd.taps * dh.taps * dw.taps
    let k = cin * taps
    let rows = dd.count * dh.count   // (od, oh) rows of the grid, each of dw.count columns
    let width = dw.count
    let outSpatial = outputDims.0 * outputDims.1 * outputDims.2
    guard rows > 0, width > 0, cout > 0 else { return }
    if k == 0 {
        if !accumulate {
            // Empty sum: zeros at the grid positions.
            for r in 0..<rows {
                let od = dd.coordinates[r / dh.count], oh = dh.coordinates[r % dh.count]
                for co in 0..<cout { for ow in dw.coordinates {
                    output[co * outSpatial + (od * outputDims.1 + oh) * outputDims.2 + ow] = 0 } }
            }
        }
        return
    }
    let direct = dd.isIdentity && dh.isIdentity && dw.isIdentity
        && dd.count == outputDims.0 && dh.count == outputDims.1 && width == outputDims.2
    let rowsPerTile = max(1, min(rows, KernelContext.im2colTileBytes / max(1, k * width * 4)))
    let tileColumns = rowsPerTile * width
    let col = UnsafeMutablePointer<Float>.allocate(capacity: k * tileColumns)
    defer { col.deallocate() }
    let result = direct ? nil : UnsafeMutablePointer<Float>.allocate(capacity: cout * tileColumns)
    defer { result?.deallocate() }
    let (_, h, w) = inputDims
    let channelStride = inputDims.0 * h * w

    dd.table.withUnsafeBufferPointer { tD in
    dh.table.withUnsafeBufferPointer { tH in
    dw.table.withUnsafeBufferPointer { tW in
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + rowsPerTile)
            let n = (r1 - r0) * width
            // im2col of this tile: row (ci, td, th, tw), column (r - r0)·width + ow.
            KernelContext.parallelFor(k, minimumChunk: 4) { range in
                for kr in range {
                    let ci = kr / taps, t = kr % taps
                    let td = t / (dh.taps * dw.taps), th = (t / dw.taps) % dh.taps, tw = t % dw.taps
                    let dst = col + kr * n
                    let src = x + ci * channelStride
                    for r in r0..<r1 {
                        let od = r / dh.count, oh = r % dh.count
                        let id = Int(tD[od * dd.taps + td]), ih = Int(tH[oh * dh.taps + th])
                        let o = dst + (r - r0) * width
                        if id < 0 || ih < 0 { o.update(repeating: 0, count: width); continue }
                        let line = src + (id * h + ih) * w
                        for ow in 0..<width {
                            let iw = Int(tW[ow * dw.taps + tw])
                            o[ow] = iw < 0 ? 0 : line[iw]
                        }
                    }
                }
            }
            if direct {
                let c = output + r0 * width
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(n), Int32(k),
                            1, a, Int32(k), col, Int32(n), accumulate ? 1 : 0, c, Int32(outSpatial))
            } else {
                let res = result!
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(n), Int32(k),
                            1, a, Int32(k), col, Int32(n), 0, res, Int32(n))
                KernelContext.parallelFor(cout) { range in
                    for co in range {
                        let src = res + co * n
                        let dstC = output + co * outSpatial
                        for r in r0..<r1 {
                            let od = dd.coordinates[r / dh.count], oh = dh.coordinates[r % dh.count]
                            let base = dstC + (od * outputDims.1 + oh) * outputDims.2
                            let s = src + (r - r0) * width
                            if accumulate { for (j, ow) in dw.coordinates.enumerated() { base[ow] += s[j] } }
                            else { for (j, ow) in dw.coordinates.enumerated() { base[ow] = s[j] } }
                        }
                    }
                }
            }
            r0 = r1
        }
    }}}
}

/// Adds `bias[c]` to every voxel of channel `c` of an N×C×… buffer.
func addChannelBias(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, batch: Int, channels: Int, inner: Int) {
    KernelContext.parallelFor(batch * channels) { r in
        for p in r {
            let b = bias[p % channels]
            let o = out + p * inner
            for i in 0..<inner { o[i] += b }
        }
    }
}
