import Kernels
import Synthesis
import Wire

/// Draws the tumor texture for patches chosen for synthesis. With the procedural engine it
/// paints the SyntheticTumors texture into the tumor mask (Synthesis.ProceduralEngine); the
/// diffusion engine needs the networks module. Other patches pass through untouched.
public final class SamplerStage: PatchProcessor {
    let engine: SynthesisConfig.Engine
    private var painted: UInt64 = 0
    private var passed: UInt64 = 0

    public init(config: PipelineConfig) throws {
        engine = config.synthesis.engine
        if engine == .diffusion {
            throw ConfigError(keyPath: "synthesis.engine",
                              "diffusion needs the networks module (VQ-GAN and diffusion samplers), which this build does not include yet; use procedural")
        }
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        guard patch.synthesize else {
            passed += 1
            return patch
        }
        let ct = try PatchConventions.ct(patch, stage: "sampler")
        let labels = try PatchConventions.grid(patch, Payload.label, like: ct, stage: "sampler")
        let tumor = try PatchConventions.grid(patch, Payload.tumorMask, like: ct, stage: "sampler")
        var rng = PatchConventions.rng(patch, .sampler)
        let result = ProceduralEngine.paint(ct: ct, organ: PatchConventions.select(labels, 1), tumor: tumor, rng: &rng)
        var out = patch
        out.setPayload(Payload.ct, .float32(result.ct))
        painted += 1
        return out
    }

    public func counters() -> [(name: String, value: UInt64)] { [("synthesized", painted), ("passed_through", passed)] }
}
