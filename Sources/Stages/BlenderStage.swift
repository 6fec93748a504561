import Kernels
import Synthesis
import Wire

/// Finishes a synthesized patch: the label gets tumor = 2 where the mask is (organ 1, background
/// 0; Synthesis.Blender.updateLabel). With the procedural engine the texture was already blended
/// by the sampler; the diffusion path (decode, blur-blend) needs the networks module. Patches
/// not chosen for synthesis pass through untouched.
public final class BlenderStage: PatchProcessor {
    private var blended: UInt64 = 0
    private var passed: UInt64 = 0

    public init(config: PipelineConfig) throws {
        if config.synthesis.engine == .diffusion {
            throw ConfigError(keyPath: "synthesis.engine",
                              "diffusion needs the networks module (VQ-GAN decoder), which this build does not include yet; use procedural")
        }
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        guard patch.synthesize else {
            passed += 1
            return patch
        }
        let ct = try PatchConventions.ct(patch, stage: "blender")
        let labels = try PatchConventions.grid(patch, Payload.label, like: ct, stage: "blender")
        let tumor = try PatchConventions.grid(patch, Payload.tumorMask, like: ct, stage: "blender")
        let label = Blender.updateLabel(organ: PatchConventions.select(labels, 1), tumor: tumor)
        var out = patch
        out.setPayload(Payload.label, .uint8(label.voxels, shape: ct.shape))
        blended += 1
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] { [("blended", blended), ("passed_through", passed)] }
}
