import KernelsAVX512
import Dispatch
import Foundation

/// The thread budget of the kernels in this process: OpenBLAS threads and the chunk count of
/// our own parallel loops (networks and autograd included). It starts at the number of active
/// cores, like OpenBLAS's own default; a stage sets its budget once (`KernelContext.threads = 2`)
/// and both follow.
public enum KernelContext {
    nonisolated(unsafe) private static var _threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Threads used by OpenBLAS and by `parallelFor`. Setting it also sets `BLASThreads.count`.
    public static var threads: Int {
        get { _threads }
        set {
            _threads = max(1, newValue)
            BLASThreads.count = _threads
        }
    }

    /// Upper bound, in bytes, of the im2col tile a convolution allocates (one per call).
    /// A convolution's peak extra memory is this tile plus a repacked weight matrix and,
    /// for transposed convolutions, one output tile of the same column count.
    nonisolated(unsafe) public static var im2colTileBytes: Int = 8 << 20

    nonisolated(unsafe) private static var _useAVX512: Bool = CPUFeatures.hasAVX512F && CPUFeatures.avx512AllowedByEnvironment

    /// Whether convolutions use the AVX-512 direct kernels (module `KernelsAVX512`) instead of the
    /// portable im2col + `cblas_sgemm` lowering. Defaults to true when the CPU has AVX-512F and the
    /// environment does not set `TUMORSTREAM_NO_AVX512=1`; setting it to true on a CPU without
    /// AVX-512F leaves it false.
    public static var useAVX512: Bool {
        get { _useAVX512 }
        set { _useAVX512 = newValue && CPUFeatures.hasAVX512F }
    }

    /// Tests and benchmarks: with `useAVX512`, take the direct kernels for every convolution, also
    /// where the GEMM lowering is expected to be faster (tiny planes; see `Tensor.directPays`).
    nonisolated(unsafe) public static var forceDirectConvolution = false

    /// Convolutions whose output planes have at most this many positions (and whose whole im2col
    /// fits `threads × im2colTileBytes`) run as one im2col GEMM over every plane at once
    /// (`wholeIm2colConvolution`): the Unet's 3×3 and 6×6 levels. With AVX-512 the GEMM is
    /// `PanelGEMM` (im2col built per K block into column panels, `WholeIm2col.panelGEMM`), else one
    /// OpenBLAS call per worker. 0 turns it off. Measured over a Unet step (`tumorbench networks
    /// unet-ab --ab plane=0,9,40`, OpenBLAS path): 40 and 9 level, 0 about 11% slower; with the panel
    /// GEMM, 144 (the 12² planes too) against 40: 1.000 and 1.021.
    nonisolated(unsafe) public static var wholeIm2colMaxPlane = 40

    /// L1 budget (bytes) of one channel chunk of the direct kernels; 0: whole channel range at once.
    public static var directChannelChunkBytes: Int {
        get { DirectConvolution.channelChunkBytes }
        set { DirectConvolution.channelChunkBytes = newValue }
    }

    /// Output positions per band of the direct kernels: each L1 channel chunk sweeps a band's tiles
    /// before the next chunk starts (the band's partial sums stay in cache).
    public static var directBandPositions: Int {
        get { DirectConvolution.bandPositions }
        set { DirectConvolution.bandPositions = newValue }
    }

    /// Runs `body` over `0..<count` split into at most `threads` contiguous ranges, in parallel.
    /// `body` must write disjoint memory for disjoint ranges.
    public static func parallelFor(_ count: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = min(_threads, max(1, count / max(1, minimumChunk)))
        if chunks <= 1 { body(0..<count); return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Whether convolutions ask the OS to back their large fresh outputs with transparent huge
    /// pages (`madvise(MADV_HUGEPAGE)`, Linux). A fresh 113 MB output otherwise takes ~27 000
    /// 4 KiB first-touch page faults inside the kernel (serialised on the memory-cgroup lock);
    /// with huge pages it takes ~55. Off: `TUMORSTREAM_NO_THP=1` or set this to false.
    nonisolated(unsafe) public static var hugePageOutputs: Bool =
        ProcessInfo.processInfo.environment["TUMORSTREAM_NO_THP"] != "1"

    /// Advises huge pages for the whole 4 KiB pages of `count` floats at `p` when they span at
    /// least 4 MiB (a hint: errors, e.g. THP disabled, are ignored; contents are not changed).
    static func adviseHugePages(_ p: UnsafeMutablePointer<Float>, count: Int) {
        #if os(Linux)
        guard hugePageOutputs && count >= (4 << 20) / 4 else { return }
        let page = 4096
        let start = (Int(bitPattern: p) + page - 1) & ~(page - 1)
        let end = Int(bitPattern: p + count) & ~(page - 1)
        guard end > start, let base = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(base, end - start, MADV_HUGEPAGE)
        #endif
    }
}
