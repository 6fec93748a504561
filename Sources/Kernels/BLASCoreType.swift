import COpenBLAS
import Foundation

/// The OpenBLAS kernel family. Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise newer
/// Xeons (e.g. family 6 model 207) and falls back to its SSE3 "Prescott" kernels, about 3× slower
/// than the AVX-512 "SkylakeX" kernels on the same CPU. OpenBLAS only reads `OPENBLAS_CORETYPE`
/// when the library loads, so the fix is to set it in the environment before the process starts,
/// or to re-execute the process once with it set (`reexecIfUnrecognised`).
public enum BLASCoreType {
    /// The kernel family OpenBLAS uses in this process ("Prescott", "Haswell", "SkylakeX", ...).
    public static var current: String { String(cString: openblas_get_corename()) }

    /// The best family this CPU supports according to /proc/cpuinfo flags, or nil if unknown.
    public static var recommended: String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        if flags.contains("avx512f") && flags.contains("avx512bw") && flags.contains("avx512vl") { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        return nil
    }

    /// True when OpenBLAS fell back to the generic Prescott kernels on a CPU that supports better ones.
    public static var isFallback: Bool { current == "Prescott" && recommended != nil }

    /// If OpenBLAS fell back to Prescott kernels and `OPENBLAS_CORETYPE` is not set, sets it to
    /// `recommended` and re-executes this program with the same arguments (never returns then).
    /// Call first thing in `main`, before any thread starts. Does nothing otherwise.
    public static func reexecIfUnrecognised() {
        guard isFallback, ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              let core = recommended else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv only returns on failure: keep running with the slower kernels.
    }
}
