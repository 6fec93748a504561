import Kernels
import Synthesis
import Wire

/// Cuts a 96³ patch from the loader's volume and plans its tumor with Synthesis's
/// `PatchSynthesizer.plan` (the STEP3 crop rule, the synthesis decision for healthy scans, the
/// tumor type and the tumor mask, drawn in the reference's order from the patch seed's cropper
/// stream, exactly as `tumord synth` does). Patches not chosen leave with `synthesize = false`
/// and pass the synthesis stages untouched.
public final class CropperStage: PatchProcessor {
    let synthesizer: PatchSynthesizer
    /// The last prepared volume: consecutive patches of one case (`data.patches_per_case`) reuse
    /// it instead of copying and scanning the volume again. Keyed by case, shape and a sampled
    /// fingerprint of the received bytes, so a different volume is never mistaken for it.
    private var prepared: (key: String, fingerprint: UInt64, healthy: Bool, source: CropSource)?
    private var reused: UInt64 = 0
    private var cropped: UInt64 = 0
    private var chosen: UInt64 = 0
    private var realTumorScans: UInt64 = 0

    public init(config: PipelineConfig) throws {
        guard let organ = SynthOrgan(rawValue: config.data.organ) else {
            throw ConfigError(keyPath: "data.organ", "unknown organ '\(config.data.organ)'")
        }
        let t = config.synthesis.tumorTypes
        let tiny = t["tiny"] ?? 0, small = t["small"] ?? 0
        let policy = SynthesisPolicy(synthesisProbability: config.synthesis.synthesizeProbability,
                                     earlyProbability: tiny + small, mediumProbability: t["medium"] ?? 0,
                                     largeProbability: t["large"] ?? 0, tinyShare: tiny + small > 0 ? tiny / (tiny + small) : 0.5)
        synthesizer = PatchSynthesizer(organ: organ, policy: policy)
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        let key = "\(patch.sourceCase)|\(patch.volumeShape)|\(patch.synthesize)"
        let fingerprint = PatchConventions.fingerprint(patch, [Payload.ct, Payload.label])
        let source: CropSource
        let healthy: Bool
        if let p = prepared, p.key == key, p.fingerprint == fingerprint {
            source = p.source
            healthy = p.healthy
            reused += 1
        } else {
            let ct = try PatchConventions.ct(patch, stage: "cropper")
            let labels = try PatchConventions.grid(patch, Payload.label, like: ct, stage: "cropper")
            try PatchConventions.checkFinite(ct, patch, stage: "cropper")
            // The loader marks healthy (eligible) cases; a scan with real tumor voxels never is.
            healthy = patch.synthesize && !labels.voxels.contains(2)
            do {
                source = try synthesizer.prepare(ct: ct, organMask: healthy ? PatchConventions.select(labels, 1) : labels)
            } catch {
                throw StageRejection("crop-failed", "\(error)")
            }
            prepared = (key, fingerprint, healthy, source)
        }
        if !healthy { realTumorScans += 1 }
        let plan: PlannedPatch
        do {
            plan = try synthesizer.plan(source: source, healthy: healthy, seed: patch.seed)
        } catch let error as CropError {
            throw StageRejection("crop-failed", "\(error)")
        } catch {
            throw StageRejection("no-organ", "\(error)")
        }
        cropped += 1
        var out = patch
        out.setPayload(Payload.ct, .float32(plan.patch.ct))
        out.setPayload(Payload.label, .uint8(plan.patch.label.voxels, shape: plan.patch.ct.shape))
        out.patchOrigin = plan.patch.origin
        out.synthesize = false
        out.tumorType = .none
        if let tumor = plan.tumor {
            out.synthesize = true
            out.tumorType = WireTumorType(rawValue: tumor.sizeClass.rawValue) ?? .none
            out.setPayload(Payload.tumorMask, .uint8(tumor.mask.voxels, shape: plan.patch.ct.shape))
            chosen += 1
        }
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] {
        [("cropped", cropped), ("chosen_for_synthesis", chosen), ("real_tumor_scans", realTumorScans),
         ("volumes_reused", reused)]
    }
}
