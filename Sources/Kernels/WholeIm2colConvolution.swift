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
    // Stride-1 "same" layers with one D tap (the Unet's (1,3,3) and 1×1 convolutions): every im2col row
    // is the channel shifted by a constant, with the positions whose tap falls in the padding zeroed,
    // so it is built with whole-vector copies under a per-tap mask instead of one gather per element;
    // a 1×1 convolution needs no im2col at all (the input is the column matrix).
    let shifts = WholeIm2col.shiftedRows ? planeShifts(planeIndex, taps: tH * tW, planeOut: planeOut,
                                                       inputPlane: h * w, dd: dd, inputD: inputDims.0) : nil
    if let shifts, taps == 1, shifts.delta[0] == 0, shifts.complete[0] {
        let workers = min(KernelContext.threads, dd.count)
        let saved = BLASThreads.count
        if workers > 1 && saved != 1 { BLASThreads.count = 1 }
        defer { if workers > 1 && saved != 1 { BLASThreads.count = saved } }
        let work = { (worker: Int) in
            let c0 = dd.count * worker / workers * planeOut, c1 = dd.count * (worker + 1) / workers * planeOut
            guard c1 > c0 else { return }
            if let bias { for co in 0..<cout { (output + co * n + c0).update(repeating: bias[co], count: c1 - c0) } }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(c1 - c0), Int32(k),
                        1, a, Int32(k), x + c0, Int32(channelStride), beta, output + c0, Int32(n))
        }
        if workers <= 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        return
    }
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
            if let shifts {
                for kr in 0..<k {
                    let ci = kr / taps, t = kr % taps
                    shifts.masks.withUnsafeBufferPointer { m in
                        shiftedRow(x + ci * channelStride, count: channelStride, delta: shifts.delta[t],
                                   mask: m.baseAddress! + t * n, from: c0, columns: columns, into: col + kr * n + c0)
                    }
                }
            } else {
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

/// Switches of `wholeIm2colConvolution`, for A/B runs.
public enum WholeIm2col {
    /// Build the im2col rows of stride-1 "same" layers with one D tap as masked shifted copies of the
    /// channel, and run 1×1 layers on the input directly (true, default); false: gather every element
    /// through the index table (the previous path).
    nonisolated(unsafe) public static var shiftedRows = true
}

/// Per (th, tw) tap: the constant input offset `delta` of every position (input index = output
/// index + delta within the channel) and a mask over the whole output (all ones where the tap reads
/// the input, 0 where it reads padding), when the layer has that form: one D tap reading plane od
/// for output plane od, output planes as large as the input planes, and each tap a pure shift.
private func planeShifts(_ index: [Int32], taps: Int, planeOut: Int, inputPlane: Int, dd: GatherDim,
                         inputD: Int) -> (delta: [Int], masks: [UInt32], complete: [Bool])? {
    guard dd.taps == 1, dd.count == inputD, planeOut == inputPlane else { return nil }
    for od in 0..<dd.count where Int(dd.table[od]) != od { return nil }
    var delta = [Int](repeating: 0, count: taps), complete = [Bool](repeating: true, count: taps)
    let n = dd.count * planeOut
    var masks = [UInt32](repeating: 0, count: taps * n)
    for t in 0..<taps {
        var d: Int? = nil
        for p in 0..<planeOut {
            let i = Int(index[t * planeOut + p])
            if i < 0 { complete[t] = false; continue }
            if let d, d != i - p { return nil }
            d = i - p
        }
        delta[t] = d ?? 0
        for od in 0..<dd.count { for p in 0..<planeOut where index[t * planeOut + p] >= 0 {
            masks[t * n + od * planeOut + p] = 0xFFFF_FFFF
        }}
    }
    return (delta, masks, complete)
}

/// `out[j] = mask[c0 + j] ≠ 0 ? src[c0 + j + delta] : 0` for j < columns, where `src` holds `count` floats
/// (never read outside them: positions whose read would fall outside are masked by construction).
@inline(__always)
private func shiftedRow(_ src: UnsafePointer<Float>, count: Int, delta: Int, mask: UnsafePointer<UInt32>, from c0: Int,
                        columns: Int, into out: UnsafeMutablePointer<Float>) {
    // Vector range: whole 8-float reads inside [0, count).
    let lo = min(columns, max(0, -delta - c0)), hi = max(lo, min(columns, count - delta - c0))
    var j = 0
    while j < lo { out[j] = mask[c0 + j] != 0 ? src[c0 + j + delta] : 0; j += 1 }
    let s = UnsafeRawPointer(src + c0 + delta), m = UnsafeRawPointer(mask + c0), o = UnsafeMutableRawPointer(out)
    while j + 8 <= hi {
        let v = s.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<UInt32>.self) & m.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<UInt32>.self)
        o.storeBytes(of: v, toByteOffset: 4 * j, as: SIMD8<UInt32>.self)
        j += 8
    }
    while j < columns {
        let i = c0 + j + delta
        out[j] = mask[c0 + j] != 0 && i >= 0 && i < count ? src[i] : 0
        j += 1
    }
}
