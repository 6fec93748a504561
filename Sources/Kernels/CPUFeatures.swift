import Foundation

/// Instruction-set extensions of this CPU that the kernels use, read once from `/proc/cpuinfo`.
public enum CPUFeatures {
    /// AVX-512 Foundation (`avx512f` in the flags). False where the flags cannot be read.
    public static let hasAVX512F: Bool = flags.contains("avx512f")

    /// The `flags` of the first processor in `/proc/cpuinfo` (empty if unreadable).
    public static let flags: Set<String> = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }()

    /// False when the environment sets `TUMORSTREAM_NO_AVX512` to anything but `0` or empty.
    static let avx512AllowedByEnvironment: Bool = {
        let value = ProcessInfo.processInfo.environment["TUMORSTREAM_NO_AVX512"] ?? ""
        return value.isEmpty || value == "0"
    }()
}
