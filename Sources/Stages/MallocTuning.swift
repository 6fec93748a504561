#if canImport(Glibc)
import Glibc
#endif

/// glibc serves allocations above 128 kB with fresh `mmap`s and unmaps them on `free`, so every
/// 5 MB patch buffer and every 113 MB decoder activation costs page faults (and the kernel's
/// zeroing) on first touch, about 3× the cost of writing it. Stages allocate and free such buffers
/// for every patch; keeping them in the heap (a 256 MB mmap threshold, trimming above 512 MB) turns
/// that into reuse; the resident size then stays near its peak. The one allocator setting of the
/// project: `tumord` and `tumorbench` call this once at start. (`mallopt` is looked up with `dlsym`:
/// Swift's Glibc module does not export <malloc.h>.) Returns false where it is not available.
public enum MallocTuning {
    @discardableResult
    public static func apply() -> Bool {
        #if canImport(Glibc)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1  // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        return mallopt(mmapThreshold, 256 << 20) == 1 && mallopt(trimThreshold, 512 << 20) == 1
        #else
        return false
        #endif
    }
}
