import COpenBLAS
import Dispatch

/// One spatial dim of a gather-form convolution: for each of `coordinates.count` output positions
/// and each of `taps` kernel taps, the input index read (or -1 for a zero).
struct GatherDim {
    /// Output coordinate (in the full output) of each position of this (sub-)grid.
    var coordinates: [Int]
    var taps: Int
    /// `[position * taps + tap]` → input index, or -1 for a zero.
    var table: [Int32]
    /// For positions `p` in `interior[t]`, tap `t` reads input `linearStart[t] + p·step` (no padding).
    var step: Int
    var linearStart: [Int]
    var interior: [Range<Int>]

    var count: Int { coordinates.count }

    /// A plain (not transposed) convolution dim: output `o`, tap `k` reads `o·stride − front + k`,
    /// clamped (replicate) or zero outside `0..<size`.
    static func convolution(size: Int, kernel: Int, stride: Int, front: Int, back: Int,
                            mode: PaddingMode) -> GatherDim {
        let out = (size + front + back - kernel) / stride + 1
        precondition(out > 0, "convolution: kernel \(kernel) larger than padded size \(size + front + back)")
        var table = [Int32](repeating: -1, count: out * kernel)
        var starts: [Int] = [], interior: [Range<Int>] = []
        for k in 0..<kernel {
            var lo = out, hi = 0
            for o in 0..<out {
                let i = o * stride - front + k
                if i >= 0 && i < size { table[o * kernel + k] = Int32(i); lo = min(lo, o); hi = max(hi, o + 1) }
                else if mode == .replicate { table[o * kernel + k] = Int32(min(max(i, 0), size - 1)) }
            }
            starts.append(k - front)
            interior.append(lo < hi ? lo..<hi : 0..<0)
        }
        return GatherDim(coordinates: Array(0..<out), taps: kernel, table: table, step: stride,
                         linearStart: starts, interior: interior)
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
        let q0 = coords.isEmpty ? 0 : (coords[0] + padding - phase) / stride
        var starts: [Int] = [], interior: [Range<Int>] = []
        for j in 0..<taps {
            var lo = coords.count, hi = 0
            for p in 0..<coords.count {
                let i = q0 + p - j
                if i >= 0 && i < inputSize { table[p * taps + j] = Int32(i); lo = min(lo, p); hi = max(hi, p + 1) }
            }
            starts.append(q0 - j)
            interior.append(lo < hi ? lo..<hi : 0..<0)
        }
        return GatherDim(coordinates: coords, taps: taps, table: table, step: 1, linearStart: starts, interior: interior)
    }

    var isIdentity: Bool { coordinates.enumerated().allSatisfy { $0.offset == $0.element } }
}

/// Gather-form convolution of one image and one group:
/// `out[co, grid(p)] = bias[co] + Σ_{ci,t} A[co, (ci,t)] · x[ci, table(p,t)]`, lowered to `cblas_sgemm`
/// over tiles of im2col columns (never the whole im2col matrix). `dims` are D, H, W.
///
/// Threads: the tiles are shared out over `KernelContext.threads` workers; each builds its own im2col
/// tile (kept small enough to stay in cache) and multiplies it with a single-threaded sgemm.
/// Peak extra memory: per worker, one column tile (≤ `KernelContext.im2colTileBytes`, but at least
/// one output row: Cin·taps × W floats) plus, when the grid is not the whole output (transposed
/// phases), a result tile of Cout × the same columns.
func gatherConvolution(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                       dims: [GatherDim], weights a: UnsafePointer<Float>, outChannels cout: Int,
                       bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, outputDims: (Int, Int, Int)) {
    let (dd, dh, dw) = (dims[0], dims[1], dims[2])
    let taps = dd.taps * dh.taps * dw.taps
    let k = cin * taps
    let rows = dd.count * dh.count   // (od, oh) rows of the grid, each of dw.count columns
    let width = dw.count
    let outSpatial = outputDims.0 * outputDims.1 * outputDims.2
    guard rows > 0, width > 0, cout > 0 else { return }
    if k == 0 {
        // Empty sum: the bias (or zeros) at the grid positions.
        for r in 0..<rows {
            let od = dd.coordinates[r / dh.count], oh = dh.coordinates[r % dh.count]
            for co in 0..<cout { for ow in dw.coordinates {
                output[co * outSpatial + (od * outputDims.1 + oh) * outputDims.2 + ow] = bias?[co] ?? 0 } }
        }
        return
    }
    let direct = dd.isIdentity && dh.isIdentity && dw.isIdentity
        && dd.count == outputDims.0 && dh.count == outputDims.1 && width == outputDims.2
    let threads = KernelContext.threads
    let budgetRows = max(1, KernelContext.im2colTileBytes / max(1, k * width * 4))
    let rowsPerTile = max(1, min(budgetRows, (rows + threads - 1) / threads))
    let tiles = (rows + rowsPerTile - 1) / rowsPerTile
    let workers = min(threads, tiles)
    let tileColumns = rowsPerTile * width
    let (_, h, w) = inputDims
    let channelStride = inputDims.0 * h * w

    let savedBLAS = BLASThreads.count
    if workers > 1 { BLASThreads.count = 1 }
    defer { if workers > 1 { BLASThreads.count = savedBLAS } }

    dd.table.withUnsafeBufferPointer { tD in
    dh.table.withUnsafeBufferPointer { tH in
    dw.table.withUnsafeBufferPointer { tW in
        let work = { (worker: Int) in
            let col = UnsafeMutablePointer<Float>.allocate(capacity: k * tileColumns)
            defer { col.deallocate() }
            let result = direct ? nil : UnsafeMutablePointer<Float>.allocate(capacity: cout * tileColumns)
            defer { result?.deallocate() }
            var tile = worker
            while tile < tiles {
                let r0 = tile * rowsPerTile, r1 = min(rows, r0 + rowsPerTile)
                let n = (r1 - r0) * width
                // im2col: row (ci, td, th, tw), column (r − r0)·width + ow.
                for kr in 0..<k {
                    let ci = kr / taps, t = kr % taps
                    let td = t / (dh.taps * dw.taps), th = (t / dw.taps) % dh.taps, tw = t % dw.taps
                    let dst = col + kr * n
                    let src = x + ci * channelStride
                    let inner = dw.interior[tw], start = dw.linearStart[tw], step = dw.step
                    for r in r0..<r1 {
                        let od = r / dh.count, oh = r % dh.count
                        let id = Int(tD[od * dd.taps + td]), ih = Int(tH[oh * dh.taps + th])
                        let o = dst + (r - r0) * width
                        if id < 0 || ih < 0 { o.update(repeating: 0, count: width); continue }
                        let line = src + (id * h + ih) * w
                        for ow in 0..<inner.lowerBound {
                            let iw = Int(tW[ow * dw.taps + tw]); o[ow] = iw < 0 ? 0 : line[iw]
                        }
                        if step == 1 {
                            (o + inner.lowerBound).update(from: line + start + inner.lowerBound, count: inner.count)
                        } else {
                            for ow in inner { o[ow] = line[start + ow * step] }
                        }
                        for ow in inner.upperBound..<width {
                            let iw = Int(tW[ow * dw.taps + tw]); o[ow] = iw < 0 ? 0 : line[iw]
                        }
                    }
                }
                if direct {
                    let c = output + r0 * width
                    if let bias { for co in 0..<cout { (c + co * outSpatial).update(repeating: bias[co], count: n) } }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(n), Int32(k),
                                1, a, Int32(k), col, Int32(n), bias == nil ? 0 : 1, c, Int32(outSpatial))
                } else {
                    let res = result!
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(n), Int32(k),
                                1, a, Int32(k), col, Int32(n), 0, res, Int32(n))
                    for co in 0..<cout {
                        let b = bias?[co] ?? 0
                        let src = res + co * n
                        let dstC = output + co * outSpatial
                        for r in r0..<r1 {
                            let od = dd.coordinates[r / dh.count], oh = dh.coordinates[r % dh.count]
                            let base = dstC + (od * outputDims.1 + oh) * outputDims.2
                            let s = src + (r - r0) * width
                            dw.coordinates.withUnsafeBufferPointer { cw in
                                for j in 0..<width { base[cw[j]] = s[j] + b }
                            }
                        }
                    }
                }
                tile += workers
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
    }}}
}
