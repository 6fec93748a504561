import Kernels
import Synthesis
import Wire

/// Finishes a synthesized patch.
/// - diffusion: decodes the `latent` (codebook snap, VQ-GAN decoder) and blends it into the CT
///   with a blurred mask (liver, kidney; pancreas takes the decoded patch), sigma from the patch
///   seed's engine stream (Synthesis.Blender, as `PatchSynthesizer.blendDecoded`).
/// - procedural: the sampler already painted the CT.
/// In both cases the label becomes 0 background, 1 organ, 2 tumor. Patches not chosen pass
/// through untouched.
public final class BlenderStage: PatchProcessor {
    let engine: DiffTumorEngine?
    let organ: SynthOrgan
    private var blended: UInt64 = 0
    private var passed: UInt64 = 0

    public init(config: PipelineConfig) throws {
        guard let organ = SynthOrgan(rawValue: config.data.organ) else {
            throw ConfigError(keyPath: "data.organ", "unknown organ '\(config.data.organ)'")
        }
        self.organ = organ
        engine = config.synthesis.engine == .diffusion ? try DiffusionModels.engine(config, samplers: false) : nil
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        guard patch.synthesize else {
            passed += 1
            return patch
        }
        let ct = try PatchConventions.ct(patch, stage: "blender")
        let labels = try PatchConventions.grid(patch, Payload.label, like: ct, stage: "blender")
        let tumor = try PatchConventions.grid(patch, Payload.tumorMask, like: ct, stage: "blender")
        var out = patch
        if let engine {
            guard let latent = patch.tensor(Payload.latent), latent.rank == 5 else {
                throw StageRejection("bad-payload", "blender: patch \(patch.patchID) has no float32 (1,8,d,h,w) latent")
            }
            let decoded = engine.decode(latent: latent).reshaped(ct.shape)
            var rng = SynthRandom(seed: patch.seed, stream: .engine)
            let sigma = Blender.drawSigma(&rng)
            let (newCT, newLabel) = Blender.blend(ct: ct, organ: labels, tumor: tumor, sample: decoded, organType: organ, sigma: sigma)
            out.removePayload(Payload.latent)
            out.setPayload(Payload.ct, .float32(newCT))
            out.setPayload(Payload.label, .uint8(newLabel.voxels, shape: ct.shape))
        } else {
            let label = Blender.updateLabel(organ: labels, tumor: tumor)
            out.setPayload(Payload.label, .uint8(label.voxels, shape: ct.shape))
        }
        blended += 1
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] { [("blended", blended), ("passed_through", passed)] }
}
