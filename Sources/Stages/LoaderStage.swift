import Foundation
import Kernels
import Synthesis
import Wire

/// The first stage: reads cases (phantom or manifest), preprocesses them, and emits one message
/// per patch to cut: the whole volume with the patch id and its seed. Consecutive patches
/// (`data.patches_per_case`) reuse one loaded case (the last two stay cached); in-process the
/// messages share its memory.
/// Replica K of N emits patch ids K, K+N, …; `data.max_patches` ends the stream.
public final class LoaderStage: PatchSource {
    let provider: CaseProvider
    let config: PipelineConfig
    let replica: Int
    let replicas: Int
    let organ: WireOrgan
    private var nextIndex: Int
    /// Recently loaded cases, most recent last (at most `cacheSize`).
    private var cached: [(index: Int, value: LoadedCase)] = []
    let cacheSize = 2
    private var loaded: UInt64 = 0
    private var failed: Set<Int> = []

    public init(provider: CaseProvider, config: PipelineConfig, replica: Int, replicas: Int) throws {
        guard provider.caseCount > 0 else { throw ConfigError(keyPath: "data", "no cases to load") }
        self.provider = provider
        self.config = config
        self.replica = replica
        self.replicas = max(replicas, 1)
        self.organ = WireOrgan(rawValue: config.data.organ) ?? .unspecified
        nextIndex = replica
    }

    public func next() throws -> PatchMessage? {
        let i = nextIndex
        if let max = config.data.maxPatches, i >= max { return nil }
        nextIndex += replicas
        let caseIndex = (i / config.data.patchesPerCase) % provider.caseCount
        if failed.count == provider.caseCount { throw LoaderError(description: "every case failed to load") }
        let c: LoadedCase
        if let hit = cached.first(where: { $0.index == caseIndex }) {
            c = hit.value
        } else {
            do {
                c = try provider.load(caseIndex)
            } catch {
                failed.insert(caseIndex)
                throw StageRejection("load-failed", "case \(caseIndex): \(error)")
            }
            loaded += 1
            cached.append((caseIndex, c))
            if cached.count > cacheSize { cached.removeFirst() }
        }
        var p = PatchMessage(patchID: UInt64(i), sourceCase: c.name,
                             seed: SynthRandom.patchSeed(run: config.seed, index: UInt64(i)), organ: organ,
                             synthesize: c.healthy, volumeShape: c.ct.shape, spacing: c.spacing, affine: c.affine,
                             createdUnix: Date().timeIntervalSince1970)
        p.setPayload(Payload.ct, .float32(c.ct))
        p.setPayload(Payload.label, .uint8(c.labels, shape: c.ct.shape))
        return p
    }

    public func counters() -> [(name: String, value: UInt64)] { [("cases_loaded", loaded), ("cases_failed", UInt64(failed.count))] }

    struct LoaderError: Error, CustomStringConvertible { let description: String }
}
