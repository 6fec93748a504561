import Kernels

/// A stage's `threads` budget applied to this process: OpenBLAS's thread count (process-wide in
/// OpenBLAS 0.3.21) and the chunk count of Kernels' own parallel loops, networks included
/// (`KernelContext`, which sets both). Both are process-wide: one stage per process
/// (`tumord stage`) gets exactly its budget; `tumord run` applies the largest budget of its stages.
enum StageThreads {
    static func apply(_ threads: Int) {
        let n = max(1, threads)
        KernelContext.threads = n
    }
}
