import Kernels
import Synthesis
import Wire

/// The VQ-GAN encoder of the diffusion path: for a patch chosen for synthesis, the 9-channel
/// condition (the normalised latent of the patch with the tumor region masked out, plus the mask
/// at latent size; Kernels.DiffTumorEngine.condition) as the `condition` payload. With the
/// procedural engine no latent is needed. Patches not chosen pass through untouched.
public final class EncoderStage: PatchProcessor {
    let engine: DiffTumorEngine?
    private var encoded: UInt64 = 0
    private var passed: UInt64 = 0

    public init(config: PipelineConfig) throws {
        engine = config.synthesis.engine == .diffusion ? try DiffusionModels.engine(config, samplers: false) : nil
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        guard let engine, patch.synthesize else {
            passed += 1
            return patch
        }
        let ct = try PatchConventions.ct(patch, stage: "encoder")
        let tumor = try PatchConventions.grid(patch, Payload.tumorMask, like: ct, stage: "encoder")
        let mask = Tensor(shape: [1, 1] + ct.shape, data: tumor.voxels.map { $0 != 0 ? 1 : 0 })
        var out = patch
        out.setPayload(Payload.condition, .float32(engine.condition(ct: DiffusionModels.batched(ct), mask: mask)))
        encoded += 1
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] { [("encoded", encoded), ("passed_through", passed)] }
}
