import Kernels
import Synthesis
import Wire

/// Draws the tumor texture for patches chosen for synthesis.
/// - procedural: paints the SyntheticTumors texture into the tumor mask (Synthesis.ProceduralEngine,
///   the patch seed's engine stream, as `PatchSynthesizer.paintProcedural`).
/// - diffusion: samples a latent from the `condition` (4-step DDPM for tiny/small tumors, 50-step
///   DDIM over T=200 for medium/large; noise from the patch seed as `tumord synth` draws it) into
///   the `latent` payload.
/// Patches not chosen pass through untouched.
public final class SamplerStage: PatchProcessor {
    let engine: DiffTumorEngine?
    static let ddimSteps = 50
    private var synthesized: UInt64 = 0
    private var passed: UInt64 = 0

    public init(config: PipelineConfig) throws {
        engine = config.synthesis.engine == .diffusion ? try DiffusionModels.engine(config, samplers: true) : nil
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        guard patch.synthesize else {
            passed += 1
            return patch
        }
        var out = patch
        if let engine {
            guard let cond = patch.tensor(Payload.condition), cond.rank == 5 else {
                throw StageRejection("bad-payload", "sampler: patch \(patch.patchID) has no float32 (1,9,d,h,w) condition")
            }
            let noiseSeed = SynthRandom.patchSeed(run: patch.seed, index: 0xD1FF)
            let latent: Tensor
            switch patch.tumorType {
            case .tiny, .small:
                guard engine.early != nil else { throw StageRejection("no-model", "an early tumor needs models.diffusion_early") }
                latent = engine.sampleEarly(cond: cond, seed: noiseSeed)
            case .medium, .large:
                guard engine.noearly != nil else { throw StageRejection("no-model", "a \(patch.tumorType) tumor needs models.diffusion_noearly") }
                latent = engine.sampleDDIM(cond: cond, seed: noiseSeed, steps: SamplerStage.ddimSteps)
            case .none:
                throw StageRejection("bad-header", "sampler: patch \(patch.patchID) is marked for synthesis without a tumor type")
            }
            out.removePayload(Payload.condition)
            out.setPayload(Payload.latent, .float32(latent))
        } else {
            let ct = try PatchConventions.ct(patch, stage: "sampler")
            let labels = try PatchConventions.grid(patch, Payload.label, like: ct, stage: "sampler")
            let tumor = try PatchConventions.grid(patch, Payload.tumorMask, like: ct, stage: "sampler")
            var rng = SynthRandom(seed: patch.seed, stream: .engine)
            let result = ProceduralEngine.paint(ct: ct, organ: labels, tumor: tumor, rng: &rng)
            out.setPayload(Payload.ct, .float32(result.ct))
        }
        synthesized += 1
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] { [("synthesized", synthesized), ("passed_through", passed)] }
}
