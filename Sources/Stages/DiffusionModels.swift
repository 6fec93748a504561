import Kernels

/// Loads the DiffTumor networks a stage needs (Kernels.DiffTumorEngine), with errors naming the
/// config key of the file that failed.
enum DiffusionModels {
    static func engine(_ config: PipelineConfig, samplers: Bool) throws -> DiffTumorEngine {
        guard let autoencoder = config.models.autoencoder else {
            throw ConfigError(keyPath: "models.autoencoder", "required by synthesis.engine: diffusion")
        }
        do {
            return try DiffTumorEngine(autoencoderPath: autoencoder,
                                       earlyPath: samplers ? config.models.diffusionEarly : nil,
                                       noearlyPath: samplers ? config.models.diffusionNoEarly : nil)
        } catch {
            throw ConfigError(keyPath: samplers ? "models" : "models.autoencoder", "cannot load the DiffTumor checkpoints: \(error)")
        }
    }

    /// (1, 1, X, Y, Z) view of an [X, Y, Z] patch.
    static func batched(_ t: Tensor) -> Tensor { t.reshaped([1, 1] + t.shape) }
}
