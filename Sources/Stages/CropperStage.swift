import Kernels
import Synthesis
import Wire

/// Cuts a 96³ patch from the loader's volume with the STEP3 rule (Synthesis.OrganCropper),
/// decides whether to synthesize (healthy scans only, probability from the config) and which
/// tumor type, and draws the tumor mask (Synthesis.TumorGeometry). Patches not chosen leave
/// with `synthesize = false` and pass the synthesis stages untouched.
public final class CropperStage: PatchProcessor {
    let organ: SynthOrgan
    let policy: SynthesisPolicy
    private var cropped: UInt64 = 0
    private var chosen: UInt64 = 0
    private var realTumorScans: UInt64 = 0

    public init(config: PipelineConfig) throws {
        guard let organ = SynthOrgan(rawValue: config.data.organ) else {
            throw ConfigError(keyPath: "data.organ", "unknown organ '\(config.data.organ)'")
        }
        self.organ = organ
        let t = config.synthesis.tumorTypes
        let tiny = t["tiny"] ?? 0, small = t["small"] ?? 0
        policy = SynthesisPolicy(synthesisProbability: config.synthesis.synthesizeProbability,
                                 earlyProbability: tiny + small, mediumProbability: t["medium"] ?? 0,
                                 largeProbability: t["large"] ?? 0, tinyShare: tiny + small > 0 ? tiny / (tiny + small) : 0.5)
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        let ct = try PatchConventions.ct(patch, stage: "cropper")
        let labels = try PatchConventions.grid(patch, Payload.label, like: ct, stage: "cropper")
        try PatchConventions.checkFinite(ct, patch, stage: "cropper")
        // The loader marks healthy (eligible) cases; a scan with real tumor voxels never is.
        let healthy = patch.synthesize && !labels.voxels.contains(2)
        if !healthy { realTumorScans += 1 }
        var rng = PatchConventions.rng(patch, .cropper)
        let organMask = PatchConventions.select(labels, 1)
        let crop: CropPatch
        do {
            crop = try OrganCropper(organ: organ).crop(ct: ct, label: healthy ? organMask : labels, healthy: healthy, rng: &rng)
        } catch {
            throw StageRejection("crop-failed", "\(error)")
        }
        cropped += 1
        var out = patch
        out.removePayload(Payload.label)
        out.setPayload(Payload.ct, .float32(crop.ct))
        out.setPayload(Payload.label, .uint8(crop.label.voxels, shape: crop.ct.shape))
        out.patchOrigin = crop.origin
        out.synthesize = false
        out.tumorType = .none
        if healthy, let size = policy.decide(healthy: true, rng: &rng) {
            let mask: TumorMask
            do {
                mask = try TumorGeometry(organ: organ).generate(organMask: crop.label, sizeClass: size, rng: &rng)
            } catch {
                throw StageRejection("no-organ", "\(error)")
            }
            out.synthesize = true
            out.tumorType = WireTumorType(rawValue: size.rawValue) ?? .none
            out.setPayload(Payload.tumorMask, .uint8(mask.mask.voxels, shape: crop.ct.shape))
            chosen += 1
        }
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] {
        [("cropped", cropped), ("chosen_for_synthesis", chosen), ("real_tumor_scans", realTumorScans)]
    }
}
