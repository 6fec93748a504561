import Foundation

/// The phase-ordered weight matrices of `Tensor.convTranspose3dPhasesWholeIm2col` (one [Cout × Cin·taps]
/// matrix per output phase, all in one buffer), kept per weight tensor so that a layer whose weights do
/// not change (the Unet's up-sampling convTs, called once per sampler step) repacks them once instead of
/// on every call (96→96 (1,4,4): 147 456 scattered stores into a fresh 590 KB buffer per call).
///
/// An entry holds the weight tensor's storage object: while it is cached the storage can neither be
/// freed (so its identity cannot be reused) nor written in place (a write through `Tensor` copies a
/// shared storage first), so a hit always has the same floats. Bounded: entries of at most
/// `maxEntryFloats` floats, at most `maxEntries` of them (oldest dropped first); weights that change every
/// call (a trainer's) simply miss. Thread-safe.
final class TransposedPhaseWeights {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(1, count))
    }
    deinit { pointer.deallocate() }

    struct Key: Equatable {
        let storage: ObjectIdentifier
        let offset: Int          // first float of the group's weights
        let shape: [Int]         // cin, weightOutChannels, cout, kernel, stride, padding, outSizes
    }

    /// Whether `convTranspose3d`'s whole-im2col phases keep their repacked weights per weight tensor
    /// (true, default) or repack them on every call (false: the previous code). For A/B runs
    /// (`tumorbench networks unet-ab --ab tcache=0,1`); `TUMORSTREAM_TCACHE=0` sets the initial value to
    /// false (whole-process comparisons, e.g. `tumorbench kernels "unet up convT"`).
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["TUMORSTREAM_TCACHE"] != "0"
    static let maxEntries = 8
    static let maxEntryFloats = 1 << 20

    private static let lock = NSLock()
    nonisolated(unsafe) private static var entries: [(key: Key, owner: AnyObject, weights: TransposedPhaseWeights)] = []

    /// The cached matrices for `key`, or nil.
    static func lookup(_ key: Key) -> TransposedPhaseWeights? {
        lock.lock(); defer { lock.unlock() }
        return entries.first { $0.key == key }?.weights
    }

    /// Caches `weights` for `key` (held with `owner`, the weight storage), when small enough.
    static func insert(_ key: Key, owner: AnyObject, _ weights: TransposedPhaseWeights) {
        guard weights.count <= maxEntryFloats else { return }
        lock.lock(); defer { lock.unlock() }
        guard !entries.contains(where: { $0.key == key }) else { return }
        if entries.count >= maxEntries { entries.removeFirst() }
        entries.append((key, owner, weights))
    }

    /// Entries currently cached (for tests).
    static var cachedCount: Int { lock.lock(); defer { lock.unlock() }; return entries.count }

    /// Drops every entry (for tests).
    static func removeAll() { lock.lock(); entries.removeAll(); lock.unlock() }
}

extension Tensor {
    /// Whether `convTranspose3d`'s whole-output im2col path (the Unet's up-sampling from 3² and 6² planes)
    /// keeps each weight tensor's phase matrices between calls and writes all phases' outputs in one
    /// parallel pass (true, default), or repacks the weights on every call and writes phase by phase
    /// (false: the previous code). The same floats either way.
    public static var transposedPhaseWeightCache: Bool {
        get { TransposedPhaseWeights.enabled }
        set { TransposedPhaseWeights.enabled = newValue }
    }
}
