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
}

extension Tensor {
    /// self += other, elementwise (same shape).
    public mutating func accumulate(_ other: Tensor) {
        precondition(shape == other.shape, "accumulate: shapes \(shape) and \(other.shape) differ")
        other.withUnsafeBufferPointer { o in
            withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] += o[i] } }
        }
    }
}
