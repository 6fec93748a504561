import COpenBLAS
import Dispatch

/// Gather-form convolution over one im2col matrix of the whole output, for layers whose every plane
/// is tiny (the Unet's 3×3 and 6×6 levels): any per-plane or per-tile lowering gives GEMMs of a few
/// dozen columns, whose packing and thread hand-offs cost more than their arithmetic. Here the
/// im2col rows (ci, td, th, tw) × columns (od, oh, ow) are built once, each worker building the
/// columns of its own run of output planes and multiplying them in one single-threaded `cblas_sgemm` (measured 3% faster over a Unet step than one OpenBLAS-threaded call).
/// `weights` is the plain [Cout × Cin·kD·kH·kW] matrix; `dims` are D, H, W and must cover the whole
/// output (`GatherDim.convolution`). Peak extra memory: the im2col matrix, Cin·taps × output voxels
/// floats (`wholeIm2colFloats`).
func wholeIm2colConvolution(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                            dims: [GatherDim], weights a: UnsafePointer<Float>, outChannels cout: Int,
                            bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let (dd, dh, dw) = (dims[0], dims[1], dims[2])
    let (tD, tH, tW) = (dd.taps, dh.taps, dw.taps)
    let taps = tD * tH * tW
    let k = cin * taps
    let width = dw.count, rows = dd.count * dh.count
    let n = rows * width
    guard n > 0, cout > 0 else { return }
    let (_, h, w) = inputDims
    let channelStride = inputDims.0 * h * w
    let col = UnsafeMutablePointer<Float>.allocate(capacity: max(1, k * n))
    defer { col.deallocate() }
    // Input offset within a plane of each (th, tw) tap at each output (oh, ow), or −1 for a zero.
    let planeOut = dh.count * width
    var planeIndex = [Int32](repeating: -1, count: tH * tW * planeOut)
    for th in 0..<tH { for tw in 0..<tW { for oh in 0..<dh.count { for ow in 0..<width {
        let ih = Int(dh.table[oh * tH + th]), iw = Int(dw.table[ow * tW + tw])
        if ih >= 0 && iw >= 0 { planeIndex[((th * tW + tw) * dh.count + oh) * width + ow] = Int32(ih * w + iw) }
    }}}}
    let beta: Float = bias == nil ? 0 : 1
    // Each worker takes a contiguous run of output planes: builds their im2col columns (rows of
    // stride n) and multiplies them with single-threaded sgemm, so its columns stay in its own cache.
    let workers = min(KernelContext.threads, dd.count)
    let saved = BLASThreads.count
    if workers > 1 && saved != 1 { BLASThreads.count = 1 }
    defer { if workers > 1 && saved != 1 { BLASThreads.count = saved } }
    dd.table.withUnsafeBufferPointer { tDt in
    planeIndex.withUnsafeBufferPointer { index in
        let work = { (worker: Int) in
            let d0 = dd.count * worker / workers, d1 = dd.count * (worker + 1) / workers
            let c0 = d0 * planeOut, columns = (d1 - d0) * planeOut
            guard columns > 0 else { return }
            for kr in 0..<k {
                let ci = kr / taps, t = kr % taps
                let td = t / (tH * tW), thw = t % (tH * tW)
                let src = x + ci * channelStride
                let idx = index.baseAddress! + thw * planeOut
                var o = col + kr * n + c0
                for od in d0..<d1 {
                    let id = Int(tDt[od * tD + td])
                    if id < 0 {
                        o.update(repeating: 0, count: planeOut)
                    } else {
                        let plane = src + id * h * w
                        for p in 0..<planeOut { let i = Int(idx[p]); o[p] = i < 0 ? 0 : plane[i] }
                    }
                    o += planeOut
                }
            }
            if let bias { for co in 0..<cout { (output + co * n + c0).update(repeating: bias[co], count: columns) } }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(columns), Int32(k),
                        1, a, Int32(k), col + c0, Int32(n), beta, output + c0, Int32(n))
        }
        if workers <= 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
    }}
}

/// Floats of the im2col matrix `wholeIm2colConvolution` allocates.
func wholeIm2colFloats(channels cin: Int, kernel: [Int], outputDims: (Int, Int, Int)) -> Int {
    cin * kernel.reduce(1, *) * outputDims.0 * outputDims.1 * outputDims.2
}
