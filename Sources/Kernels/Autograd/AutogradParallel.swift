import Dispatch

/// Parallel loops of the backward kernels: `forEach(n)` splits 0..<n into `KernelContext.threads`
/// contiguous chunks run concurrently; `body` must write disjoint memory for distinct indices.
public enum AutogradParallel {
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        let chunks = min(KernelContext.threads, count)
        if chunks <= 1 { for i in 0..<count { body(i) }; return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            for i in (count * c / chunks)..<(count * (c + 1) / chunks) { body(i) }
        }
    }

    /// `body(lo, hi)` on `KernelContext.threads` contiguous ranges of 0..<count (elementwise
    /// passes; below 64 Ki elements on the calling thread only).
    public static func forRanges(_ count: Int, _ body: (Int, Int) -> Void) {
        let chunks = count < 1 << 16 ? 1 : min(KernelContext.threads, count)
        if chunks <= 1 { body(0, count); return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in body(count * c / chunks, count * (c + 1) / chunks) }
    }
}

extension Tensor {
    /// self += other, elementwise (same shape).
    public mutating func accumulate(_ other: Tensor) {
        precondition(shape == other.shape, "accumulate: shapes \(shape) and \(other.shape) differ")
        other.withUnsafeBufferPointer { o in
            withUnsafeMutableBufferPointer { p in
                let (ob, pb) = (o.baseAddress!, p.baseAddress!)
                AutogradParallel.forRanges(p.count) { lo, hi in for i in lo..<hi { pb[i] += ob[i] } }
            }
        }
    }
}
