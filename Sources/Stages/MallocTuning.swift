#if canImport(Glibc)
import Glibc
#endif

/// glibc serves allocations above 128 kB with fresh `mmap`s and unmaps them on `free`, so every
/// 5 MB patch buffer costs page faults on first touch. Stages allocate and free such buffers for
/// every patch; keeping them in the heap (a 256 MB mmap threshold, trimming above 512 MB) turns
/// that into reuse. `tumord` calls this once at start. (`mallopt` is looked up with `dlsym`:
/// Swift's Glibc module does not export <malloc.h>.)
public enum MallocTuning {
    public static func apply() {
        #if canImport(Glibc)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1  // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        _ = mallopt(mmapThreshold, 256 << 20)
        _ = mallopt(trimThreshold, 512 << 20)
        #endif
    }
}
