import COpenBLAS
import Dispatch
import KernelsAVX512

extension Tensor {
    /// A 1×1×1 convolution with stride 1 and no padding (`weight` [Cout, Cin, 1, 1, 1], `bias` [Cout] or
    /// nil), computed as what it is: per image Y (Cout × S) = W (Cout × Cin) · X (Cin × S) + bias, the S
    /// columns split into one contiguous run per worker, each a single-threaded `cblas_sgemm` reading
    /// the input and writing the output in place. No im2col copy, no partial-result ring, no copy-out
    /// (what `conv3d`'s general lowering does for a 1×1 kernel on large planes). Same result as
    /// `conv3d(weight:bias:)` up to float summation order.
    public func pointwiseConv3d(weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(rank == 5 && weight.rank == 5 && Array(weight.shape[2...]) == [1, 1, 1] && weight.shape[1] == shape[1],
                     "pointwiseConv3d: input \(shape) and weight \(weight.shape) (must be [Cout, Cin, 1, 1, 1])")
        let (n, cin, cout) = (shape[0], shape[1], weight.shape[0])
        precondition(bias == nil || bias!.count == cout, "pointwiseConv3d: bias \(bias!.shape) for \(cout) output channels")
        let s = spatialCount
        var out = Tensor(uninitialized: [n, cout] + Array(shape[2...]))
        guard n > 0, cout > 0, s > 0 else { return out }
        // Runs of at least ~256 columns per worker, 16-float aligned.
        let workers = max(1, min(KernelContext.threads, s / 256))
        let chunk = ((s + workers - 1) / workers + 15) / 16 * 16
        if KernelContext.useAVX512 && WholeIm2col.panelPointwise && cin > 0 {
            withPointer { x in weight.withPointer { w in out.withMutablePointer { y in
                let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
                let work = { (worker: Int) in
                    let c0 = worker * chunk, c1 = min(s, c0 + chunk)
                    guard c1 > c0 else { return }
                    for b in 0..<n {
                        Tensor.pointwisePanel(x: x + b * cin * s, cin: cin, s: s, w: w, cout: cout, bias: bp,
                                              y: y + b * cout * s, columns: c0, c1)
                    }
                }
                if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
            }}}
            return out
        }
        let saved = BLASThreads.count
        if workers > 1 && saved != 1 { BLASThreads.count = 1 }
        defer { if workers > 1 && saved != 1 { BLASThreads.count = saved } }
        withPointer { x in weight.withPointer { w in out.withMutablePointer { y in
            let bp = bias?.withPointer { $0 }   // bias outlives this scope (held by the caller)
            let work = { (worker: Int) in
                let c0 = worker * chunk, c1 = min(s, c0 + chunk)
                guard c1 > c0 else { return }
                for b in 0..<n {
                    let yb = y + b * cout * s + c0
                    if let bp { for co in 0..<cout { (yb + co * s).update(repeating: bp[co], count: c1 - c0) } }
                    if cin == 0 {
                        if bp == nil { for co in 0..<cout { (yb + co * s).update(repeating: 0, count: c1 - c0) } }
                        continue
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(c1 - c0), Int32(cin),
                                1, w, Int32(cin), x + b * cin * s + c0, Int32(s), bp == nil ? 0 : 1, yb, Int32(s))
                }
            }
            if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        }}}
        return out
    }

    /// Columns [c0, c1) of Y (cout × s) = W (cout × cin) · X (cin × s) + bias on `PanelGEMM`: whole
    /// 48-column panels read X in place (row stride s), the columns left over are copied (zero-padded to
    /// 16) into a small panel per K block; K in blocks of `WholeIm2col.panelKBlock`.
    static func pointwisePanel(x: UnsafePointer<Float>, cin: Int, s: Int, w: UnsafePointer<Float>, cout: Int,
                               bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, columns c0: Int, _ c1: Int) {
        let cols = c1 - c0, full = cols / 48 * 48, tail = cols - full, tailWidth = (tail + 15) / 16 * 16
        let kb = WholeIm2col.panelKBlock > 0 ? min(WholeIm2col.panelKBlock, cin) : cin
        let tailB = UnsafeMutablePointer<Float>.allocate(capacity: max(16, kb * tailWidth))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: PanelGEMM.scratchFloats(rows: cout))
        defer { tailB.deallocate(); scratch.deallocate() }
        var k0 = 0
        while k0 < cin {
            let klen = min(kb, cin - k0), last = k0 + klen == cin
            if full > 0 {
                PanelGEMM.multiplyBlock(rows: 0, cout, k: klen, a: w + k0, lda: cin, b: x + c0, panelStride: PanelGEMM.panelColumns,
                                        firstRow: k0, columns: full, valid: full, c: y + c0, ldc: s, bias: bias,
                                        accumulate: k0 > 0, scratch: scratch, last: last, ldb: s)
            }
            if tail > 0 {
                for r in 0..<klen {
                    let dst = tailB + r * tailWidth
                    dst.update(from: x + (k0 + r) * s + c0 + full, count: tail)
                    (dst + tail).update(repeating: 0, count: tailWidth - tail)
                }
                PanelGEMM.multiplyBlock(rows: 0, cout, k: klen, a: w + k0, lda: cin, b: tailB,
                                        panelStride: klen * PanelGEMM.panelColumns, firstRow: 0, columns: tailWidth, valid: tail,
                                        c: y + c0 + full, ldc: s, bias: bias, accumulate: k0 > 0, scratch: scratch, last: last)
            }
            k0 += klen
        }
    }
}
