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

    /// Lowest and highest input index read by position `p` (nil if every tap reads a zero).
    func inputRange(_ p: Int) -> (Int, Int)? {
        var lo = Int.max, hi = Int.min
        for t in 0..<taps { let i = Int(table[p * taps + t]); if i >= 0 { lo = min(lo, i); hi = max(hi, i) } }
        return lo <= hi ? (lo, hi) : nil
    }
}

/// Gather-form convolution of one image and one group:
/// `out[co, grid(q, r, c)] = bias[co] + Σ_{td,th} Σ_{ci,tw} A[(td, th, co), (ci, tw)] · x[ci, D(q,td), H(r,th), W(c,tw)]`
/// where D/H/W are the index tables of `dims` (−1 reads a zero). `weights` is the (D,H)-tap-stacked
/// matrix [tD·tH·Cout × Cin·tW] (row `(td·tH + th)·Cout + co`).
///
/// Lowering: for each input plane, an im2col over the W taps only (rows (ci, tw), columns = the input
/// rows the chunk needs × output width) and one `cblas_sgemm` with all tD·tH (D, H) taps stacked
/// into M, so each im2col element is reused tD·tH·Cout times; the partial planes go into a ring of
/// `span` planes, and each output row then sums its tD·tH partial rows. Output planes are split
/// into blocks and grid rows into chunks; the (block, chunk) items are shared out over
/// `KernelContext.threads` workers, each with a single-threaded sgemm and its own buffers.
/// Peak extra memory per worker: one im2col chunk (Cin·tW × chunk input rows × W floats) plus a ring
/// of `span` partial planes (span·tD·tH·Cout × chunk input rows × W floats, span ≤ tD), plus the
/// stacked weights. Chunks are sized so the im2col chunk stays within `KernelContext.im2colTileBytes`
/// (whole planes when they fit; never less than one grid row).
func gatherConvolution(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                       dims: [GatherDim], weights a: UnsafePointer<Float>, outChannels cout: Int,
                       bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, outputDims: (Int, Int, Int)) {
    let (dd, dh, dw) = (dims[0], dims[1], dims[2])
    let (tD, tH, tW) = (dd.taps, dh.taps, dw.taps)
    let k = cin * tW
    let m = tD * tH * cout
    let width = dw.count
    let outPlane = outputDims.1 * outputDims.2
    let outSpatial = outputDims.0 * outPlane
    guard dd.count > 0, dh.count > 0, width > 0, cout > 0 else { return }
    let direct = dd.isIdentity && dh.isIdentity && dw.isIdentity
        && dd.count == outputDims.0 && dh.count == outputDims.1 && width == outputDims.2
    let threads = KernelContext.threads
    let (_, h, w) = inputDims
    let plane = h * w, channelStride = inputDims.0 * plane
    // Chunks of grid rows per plane: as few as fit the im2col budget (halo rows are recomputed).
    let rowBytes = max(1, k) * width * 4
    let budgetRows = max(1, KernelContext.im2colTileBytes / rowBytes)
    let chunks = min(dh.count, max(1, (h + budgetRows - 1) / budgetRows))
    let rowsPerChunk = (dh.count + chunks - 1) / chunks
    let chunkCount = (dh.count + rowsPerChunk - 1) / rowsPerChunk
    let blocks = max(1, min(threads, dd.count))
    let items = chunkCount * blocks
    let workers = min(threads, items)
    let ranges = (0..<dd.count).map { dd.inputRange($0) }
    var span = 1
    for r in ranges { if let r { span = max(span, r.1 - r.0 + 1) } }
    // Input rows each chunk reads, and the most of them.
    let chunkRows: [(Int, Int)?] = (0..<chunkCount).map { c in
        var lo = Int.max, hi = Int.min
        for r in (c * rowsPerChunk)..<min(dh.count, (c + 1) * rowsPerChunk) {
            if let x = dh.inputRange(r) { lo = min(lo, x.0); hi = max(hi, x.1) }
        }
        return lo <= hi ? (lo, hi) : nil
    }
    let maxInRows = chunkRows.map { $0.map { $0.1 - $0.0 + 1 } ?? 0 }.max() ?? 0
    // With one D tap (the (1,k,k) convolutions), planes are independent: batch enough of them per
    // GEMM to give it at least ~1024 columns (within the budget).
    let batch = tD == 1 ? max(1, min(dd.count, 1024 / max(1, maxInRows * width), budgetRows / max(1, maxInRows))) : 1
    let maxColumns = max(1, maxInRows * width * batch)

    let savedBLAS = BLASThreads.count
    if workers > 1 { BLASThreads.count = 1 }
    defer { if workers > 1 { BLASThreads.count = savedBLAS } }

    dd.table.withUnsafeBufferPointer { tDt in
    dh.table.withUnsafeBufferPointer { tHt in
    dw.table.withUnsafeBufferPointer { tWt in
    dh.coordinates.withUnsafeBufferPointer { cH in
    dw.coordinates.withUnsafeBufferPointer { cW in
        let work = { (worker: Int) in
            let col = UnsafeMutablePointer<Float>.allocate(capacity: max(1, k) * maxColumns)
            defer { col.deallocate() }
            let ring = UnsafeMutablePointer<Float>.allocate(capacity: max(1, span * m * maxColumns))
            defer { ring.deallocate() }
            let rowAcc = UnsafeMutablePointer<Float>.allocate(capacity: width)
            defer { rowAcc.deallocate() }
            let sources = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: max(1, tD * tH))
            defer { sources.deallocate() }
            let needed = UnsafeMutablePointer<Bool>.allocate(capacity: max(1, inputDims.0))
            defer { needed.deallocate() }
            // Batched (tD == 1) mode: column block of each input plane in the GEMM result, or -1.
            let batchSlot = UnsafeMutablePointer<Int>.allocate(capacity: max(1, inputDims.0))
            defer { batchSlot.deallocate() }
            var item = worker
            while item < items {
                let chunk = item % chunkCount, block = item / chunkCount
                let qa = dd.count * block / blocks, qb = dd.count * (block + 1) / blocks
                let r0 = chunk * rowsPerChunk, r1 = min(dh.count, r0 + rowsPerChunk)
                let (ihLo, ihHi) = chunkRows[chunk] ?? (0, -1)
                let n = (ihHi - ihLo + 1) * width     // columns of this chunk's GEMM
                for i in 0..<inputDims.0 { needed[i] = false }
                for q in qa..<qb { for td in 0..<tD { let id = Int(tDt[q * tD + td]); if id >= 0 { needed[id] = true } } }

                // Partial results of input plane `id`: row `s` of the stacked taps starts at base(id) + s·ld.
                var ld = n
                var batched = false
                // Sums the partial rows of output plane position q into the output.
                func emit(_ q: Int) {
                    let od = dd.coordinates[q]
                    for co in 0..<cout {
                        let b = bias?[co] ?? 0
                        let base = output + co * outSpatial + od * outPlane
                        for r in r0..<r1 {
                            var count = 0
                            if k > 0 && n > 0 {
                                for td in 0..<tD {
                                    let id = Int(tDt[q * tD + td])
                                    if id < 0 { continue }
                                    let slotBase = batched ? ring + batchSlot[id] * n : ring + (id % span) * m * n
                                    for th in 0..<tH {
                                        let ih = Int(tHt[r * tH + th])
                                        if ih < 0 { continue }
                                        sources[count] = UnsafePointer(slotBase + ((td * tH + th) * cout + co) * ld + (ih - ihLo) * width)
                                        count += 1
                                    }
                                }
                            }
                            let acc = direct ? base + r * width : rowAcc
                            switch count {
                            case 0: acc.update(repeating: b, count: width)
                            case 1: let s0 = sources[0]; for j in 0..<width { acc[j] = b + s0[j] }
                            default:
                                let s0 = sources[0], s1 = sources[1]
                                for j in 0..<width { acc[j] = b + s0[j] + s1[j] }
                                var i = 2
                                while i + 1 < count {
                                    let u = sources[i], v = sources[i + 1]
                                    for j in 0..<width { acc[j] += u[j] + v[j] }
                                    i += 2
                                }
                                if i < count { let u = sources[i]; for j in 0..<width { acc[j] += u[j] } }
                            }
                            if !direct {
                                let row = base + cH[r] * outputDims.2
                                for j in 0..<width { row[cW[j]] = acc[j] }
                            }
                        }
                    }
                }

                // im2col of plane `id`, input rows ihLo...ihHi: row (ci, tw), column (ih − ihLo)·width + c,
                // written at dstBase with a row stride of ldCol.
                func im2col(_ id: Int, _ dstBase: UnsafeMutablePointer<Float>, _ ldCol: Int) {
                    for kr in 0..<k {
                        let ci = kr / tW, tw = kr % tW
                        let dst = dstBase + kr * ldCol
                        let src = x + ci * channelStride + id * plane
                        let inner = dw.interior[tw], start = dw.linearStart[tw], step = dw.step
                        for ih in ihLo...ihHi {
                            let o = dst + (ih - ihLo) * width
                            let line = src + ih * w
                            for c in 0..<inner.lowerBound { let iw = Int(tWt[c * tW + tw]); o[c] = iw < 0 ? 0 : line[iw] }
                            if step == 1 {
                                (o + inner.lowerBound).update(from: line + start + inner.lowerBound, count: inner.count)
                            } else {
                                for c in inner { o[c] = line[start + c * step] }
                            }
                            for c in inner.upperBound..<width { let iw = Int(tWt[c * tW + tw]); o[c] = iw < 0 ? 0 : line[iw] }
                        }
                    }
                }

                var lo = Int.max, hi = Int.min
                for q in qa..<qb { if let r = ranges[q] { lo = min(lo, r.0); hi = max(hi, r.1) } }
                var q = qa
                if tD == 1 && k > 0 && n > 0 {
                    // Independent planes: im2col `batch` of them side by side, one GEMM, then emit.
                    while q < qb {
                        let q0 = q, qEnd = min(qb, q + batch)
                        var ids: [Int] = []
                        for qq in q0..<qEnd { if let r = ranges[qq], !ids.contains(r.0) { ids.append(r.0) } }
                        let ldc = ids.count * n
                        for (j, id) in ids.enumerated() { im2col(id, col + j * n, ldc); batchSlot[id] = j }
                        if !ids.isEmpty {
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(ldc), Int32(k),
                                        1, a, Int32(k), col, Int32(ldc), 0, ring, Int32(ldc))
                        }
                        ld = ldc
                        batched = true
                        for qq in q0..<qEnd { emit(qq) }
                        q = qEnd
                    }
                } else if lo <= hi && k > 0 && n > 0 {
                    for id in lo...hi {
                        if !needed[id] {
                            while q < qb, ranges[q].map({ $0.1 <= id }) ?? true { emit(q); q += 1 }
                            continue
                        }
                        im2col(id, col, n)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                                    1, a, Int32(k), col, Int32(n), 0, ring + (id % span) * m * n, Int32(n))
                        while q < qb, ranges[q].map({ $0.1 <= id }) ?? true { emit(q); q += 1 }
                    }
                }
                while q < qb { emit(q); q += 1 }   // planes that read only zeros (or no input channels)
                item += workers
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
    }}}}}
}
