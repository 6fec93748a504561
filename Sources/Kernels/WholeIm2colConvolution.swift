import COpenBLAS
import Dispatch
import Foundation
import KernelsAVX512

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
    if KernelContext.useAVX512 && WholeIm2col.panelGEMM {
        panelConvolution(input: x, channels: cin, inputDims: inputDims, dims: dims, planeIndex: planeIndex,
                         weights: a, outChannels: cout, bias: bias, output: output)
        return
    }
    let beta: Float = bias == nil ? 0 : 1
    // Stride-1 "same" layers with one D tap (the Unet's (1,3,3) and 1×1 convolutions): every im2col row
    // is the channel shifted by a constant, with the positions whose tap falls in the padding zeroed,
    // so it is built with whole-vector copies under a per-tap mask instead of one gather per element;
    // a 1×1 convolution needs no im2col at all (the input is the column matrix).
    let shifts = WholeIm2col.shiftedRows ? planeShifts(planeIndex, taps: tH * tW, planeOut: planeOut,
                                                       inputPlane: h * w, dd: dd, inputD: inputDims.0, maskStride: n) : nil
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
    /// With `KernelContext.useAVX512`: multiply with our own AVX-512 GEMM (`PanelGEMM`, im2col built
    /// directly in 48-column panels, weights read as they are) instead of single-threaded OpenBLAS
    /// `cblas_sgemm` per worker (false: the previous path, also the portable one). The environment
    /// variable `TUMORSTREAM_PANEL_GEMM=0` sets the initial value to false (whole-process comparisons,
    /// e.g. `tumorbench trainer`).
    nonisolated(unsafe) public static var panelGEMM = ProcessInfo.processInfo.environment["TUMORSTREAM_PANEL_GEMM"] != "0"
    /// With `KernelContext.useAVX512`: `Tensor.pointwiseConv3d` (1×1×1 convolutions) multiplies with
    /// `PanelGEMM` too, reading the input in place (false: single-threaded OpenBLAS per worker).
    /// `TUMORSTREAM_PANEL_GEMM=0` sets its initial value to false as well.
    nonisolated(unsafe) public static var panelPointwise = ProcessInfo.processInfo.environment["TUMORSTREAM_PANEL_GEMM"] != "0"
    /// How `PanelGEMM` splits the work between the workers: 0 (default) runs of output columns, each
    /// worker building its columns one K block at a time and multiplying them at once (no hand-off, the
    /// block stays in its L2); 1 output-channel rows (the workers build all panels together, then each
    /// multiplies its rows against all of them: measured 1.1–1.6× slower on the Unet's 3² level).
    nonisolated(unsafe) public static var panelSplit = 0
    /// Rows of B (Cin·taps) per K block of `PanelGEMM` (one 48-column panel block: 192 B per row, so
    /// 128 rows are 24 KiB, in L1); 0: all of K at once.
    nonisolated(unsafe) public static var panelKBlock = 128

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
                         inputD: Int, maskStride n: Int) -> (delta: [Int], masks: [UInt32], complete: [Bool])? {
    guard dd.taps == 1, dd.count == inputD, planeOut == inputPlane else { return nil }
    for od in 0..<dd.count where Int(dd.table[od]) != od { return nil }
    var delta = [Int](repeating: 0, count: taps), complete = [Bool](repeating: true, count: taps)
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

/// `wholeIm2colConvolution` on `PanelGEMM`: the im2col is built straight into 48-column panels (masked
/// shifted copies for stride-1 "same" layers with one D tap, else gathered through an index table) and
/// multiplied by the weights as they are. Work split: `WholeIm2col.panelSplit`.
private func panelConvolution(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                              dims: [GatherDim], planeIndex: [Int32], weights a: UnsafePointer<Float>,
                              outChannels cout: Int, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let (dd, dh, dw) = (dims[0], dims[1], dims[2])
    let (tD, tH, tW) = (dd.taps, dh.taps, dw.taps)
    let taps = tD * tH * tW, planeTaps = tH * tW
    let k = cin * taps
    let planeOut = dh.count * dw.count
    let n = dd.count * planeOut
    let nPad = (n + 15) / 16 * 16
    let (_, h, w) = inputDims
    let channelStride = inputDims.0 * h * w
    if k == 0 {
        for co in 0..<cout { (output + co * n).update(repeating: bias?[co] ?? 0, count: n) }
        return
    }
    var shifts = WholeIm2col.shiftedRows ? planeShifts(planeIndex, taps: planeTaps, planeOut: planeOut, inputPlane: h * w,
                                                       dd: dd, inputD: inputDims.0, maskStride: nPad) : nil
    // General form: input offset within the channel of tap t at column j, −1 for a zero (and past n).
    var index: [Int32] = []
    if shifts == nil {
        index = [Int32](repeating: -1, count: taps * nPad)
        for t in 0..<taps {
            let td = t / planeTaps, thw = t % planeTaps
            for od in 0..<dd.count {
                let id = Int(dd.table[od * tD + td])
                guard id >= 0 else { continue }
                for p in 0..<planeOut {
                    let i = Int(planeIndex[thw * planeOut + p])
                    if i >= 0 { index[t * nPad + od * planeOut + p] = Int32(id * h * w + i) }
                }
            }
        }
    }
    // Zero-padded stride-1 layers with D taps too (the trainer's 3³ convolutions on 6³): when every tap
    // reads the channel at a constant offset from the output index wherever it does not read a zero,
    // its rows are masked shifted copies as well.
    if shifts == nil && WholeIm2col.shiftedRows {
        var delta = [Int](repeating: 0, count: taps), masks = [UInt32](repeating: 0, count: taps * nPad)
        var isShift = true
        tapLoop: for t in 0..<taps {
            var d: Int? = nil
            for j in 0..<n {
                let i = Int(index[t * nPad + j])
                guard i >= 0 else { continue }
                if let d, d != i - j { isShift = false; break tapLoop }
                d = i - j
                masks[t * nPad + j] = 0xFFFF_FFFF
            }
            delta[t] = d ?? 0
        }
        if isShift { shifts = (delta, masks, []) }
    }
    // Rows [k0, k1) of B's columns [c0, c1) into panels at `dst` (panel q at dst + panelStride·q, row kr at (kr − firstRow)·width).
    let pack = { (k0: Int, k1: Int, c0: Int, c1: Int, dst: UnsafeMutablePointer<Float>, panelStride: Int, firstRow: Int) in
        guard c1 > c0, k1 > k0 else { return }
        if let shifts {
            shifts.delta.withUnsafeBufferPointer { dp in shifts.masks.withUnsafeBufferPointer { mp in
                PanelGEMM.packShifted(input: x, channelStride: channelStride, inputFloats: cin * channelStride, taps: taps,
                                      delta: dp.baseAddress!, mask: mp.baseAddress!, maskStride: nPad,
                                      rows: k0, k1, columns: c0, c1, into: dst, panelStride: panelStride, firstRow: firstRow)
            }}
        } else {
            index.withUnsafeBufferPointer { ip in
                PanelGEMM.packGathered(input: x, channelStride: channelStride, taps: taps, index: ip.baseAddress!,
                                       indexStride: nPad, rows: k0, k1, columns: c0, c1, into: dst,
                                       panelStride: panelStride, firstRow: firstRow)
            }
        }
    }
    let kBlock = WholeIm2col.panelKBlock
    let workers = max(1, min(KernelContext.threads, (n + 15) / 16))
    let byRows = WholeIm2col.panelSplit == 1
    if workers == 1 || !byRows {
        // Runs of columns starting at multiples of 16; each worker builds its columns one K block at a
        // time (the block stays in its L2) and multiplies it into its columns of C.
        let kb = kBlock > 0 ? min(kBlock, k) : k
        let work = { (wk: Int) in
            // Boundaries at the nearest multiple of 16 (216 columns: 112 + 104, each 2 panels and a 16-column one).
            let c0 = min(n, (n * wk / workers + 8) / 16 * 16)
            let c1 = wk == workers - 1 ? n : min(n, (n * (wk + 1) / workers + 8) / 16 * 16)
            guard c1 > c0 else { return }
            let width = (c1 - c0 + 15) / 16 * 16
            let block = UnsafeMutableRawPointer.allocate(byteCount: 4 * kb * width, alignment: 64)
                .bindMemory(to: Float.self, capacity: kb * width)
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: PanelGEMM.scratchFloats(rows: cout))
            defer { block.deallocate(); scratch.deallocate() }
            var k0 = 0
            while k0 < k {
                let klen = min(kb, k - k0)
                pack(k0, k0 + klen, c0, c1, block, klen * PanelGEMM.panelColumns, k0)
                PanelGEMM.multiplyBlock(rows: 0, cout, k: klen, a: a + k0, lda: k, b: block,
                                        panelStride: klen * PanelGEMM.panelColumns, firstRow: 0, columns: width,
                                        valid: c1 - c0, c: output + c0, ldc: n, bias: bias, accumulate: k0 > 0,
                                        scratch: scratch, last: k0 + klen == k)
                k0 += klen
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
    } else {
        // The workers pack whole panels (runs starting at multiples of 48), then multiply runs of 8 rows.
        let b = UnsafeMutableRawPointer.allocate(byteCount: 4 * k * nPad, alignment: 64).bindMemory(to: Float.self, capacity: k * nPad)
        defer { b.deallocate() }
        let panels = (n + 47) / 48
        DispatchQueue.concurrentPerform(iterations: workers) { wk in
            let q0 = panels * wk / workers, q1 = panels * (wk + 1) / workers
            pack(0, k, 48 * q0, min(n, 48 * q1), b + k * 48 * q0, k * PanelGEMM.panelColumns, 0)
        }
        let blocks = (cout + 7) / 8
        DispatchQueue.concurrentPerform(iterations: workers) { wk in
            let r0 = min(cout, 8 * (blocks * wk / workers)), r1 = min(cout, 8 * (blocks * (wk + 1) / workers))
            PanelGEMM.multiply(rows: r0, r1, k: k, a: a, lda: k, b: b, columns: 0, nPad, valid: n, c: output, ldc: n,
                               bias: bias, kBlock: kBlock)
        }
    }
}
