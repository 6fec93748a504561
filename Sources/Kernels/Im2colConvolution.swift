import COpenBLAS
import Dispatch

/// Gather-form convolution with a full (D, H, W)-tap im2col, for strided convolutions (where stacking
/// taps into M would compute partials no output uses) and tiny Cin·kW. Same result as `gatherConvolution`
/// but `weights` is the plain [Cout × Cin·kD·kH·kW] matrix:
/// `out[co, grid(p)] = bias[co] + Σ_{ci,t} A[co, (ci,t)] · x[ci, table(p,t)]`, lowered to `cblas_sgemm`
/// over tiles of im2col columns (never the whole im2col matrix). `dims` are D, H, W.
///
/// Threads: the tiles are shared out over `KernelContext.threads` workers; each builds its own im2col
/// tile (kept small enough to stay in cache) and multiplies it with a single-threaded sgemm.
/// Peak extra memory: per worker, one column tile (≤ `KernelContext.im2colTileBytes`, but at least
/// one output row: Cin·taps × W floats) plus, when the grid is not the whole output (transposed
/// phases), a result tile of Cout × the same columns.
func im2colConvolution(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
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
