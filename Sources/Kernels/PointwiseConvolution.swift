import COpenBLAS
import Dispatch

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
}
