import Wire

/// The VQ-GAN encoder of the diffusion path (latent of the masked patch plus the mask at latent
/// size: the 9-channel condition). The procedural engine needs no latent: every patch passes
/// through untouched, counted.
public final class EncoderStage: PatchProcessor {
    private var passed: UInt64 = 0

    public init(config: PipelineConfig) throws {
        if config.synthesis.engine == .diffusion {
            throw ConfigError(keyPath: "synthesis.engine",
                              "diffusion needs the networks module (VQ-GAN encoder), which this build does not include yet; use procedural")
        }
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        passed += 1
        return patch
    }

    public func counters() -> [(name: String, value: UInt64)] { [("passed_through", passed)] }
}
