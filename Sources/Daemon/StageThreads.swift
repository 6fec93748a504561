import Kernels

/// A stage's `threads` budget applied to this process: OpenBLAS's thread count (process-wide in
/// OpenBLAS 0.3.21), the chunk count of Kernels' own parallel loops (`KernelContext`) and of the
/// networks' loops (`NetworkOps`). All three are process-wide: one stage per process
/// (`tumord stage`) gets exactly its budget; `tumord run` applies the largest budget of its stages.
enum StageThreads {
    static func apply(_ threads: Int) {
        let n = max(1, threads)
        KernelContext.threads = n  // also sets BLASThreads.count
        NetworkOps.threads = n
        BLASThreads.count = n
    }
}
