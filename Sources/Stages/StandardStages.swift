/// The stages of the product, by name, built from the config.
public enum StandardStages {
    public static func role(_ stage: StageName, _ config: PipelineConfig) throws -> StageSpec.Role {
        switch stage {
        case .loader:
            let provider = try cases(config)
            return .source { replica, replicas in
                try LoaderStage(provider: provider, config: config, replica: replica, replicas: replicas)
            }
        case .cropper:
            _ = try CropperStage(config: config)  // config errors now, not on the stage thread
            return .processor { _ in try CropperStage(config: config) }
        case .encoder:
            _ = try EncoderStage(config: config)
            return .processor { _ in try EncoderStage(config: config) }
        case .sampler:
            _ = try SamplerStage(config: config)
            return .processor { _ in try SamplerStage(config: config) }
        case .blender:
            _ = try BlenderStage(config: config)
            return .processor { _ in try BlenderStage(config: config) }
        case .writer:
            return .processor { replica in try WriterStage(config: config, replica: replica) }
        case .trainer:
            _ = try TrainerStage.validate(config)
            return .processor { _ in try TrainerStage(config: config) }
        }
    }

    static func cases(_ config: PipelineConfig) throws -> CaseProvider {
        switch config.data.source {
        case .phantom:
            return try PhantomCases(cases: config.data.phantomCases, seed: config.data.phantomSeed, organ: config.data.organ,
                                    shape: config.data.phantomShape)
        case .manifest:
            guard let path = config.data.manifest else { throw ConfigError(keyPath: "data.manifest", "required by data.source: manifest") }
            return try ManifestCases(path: path, organ: config.data.organ)
        }
    }

    /// Bytes of one 96³ patch message: CT float32, label and tumor mask uint8.
    public static let patchBytes = 96 * 96 * 96 * (4 + 1 + 1)

    public static func memoryBoundDescription(_ config: PipelineConfig) -> String {
        let volume = config.data.source == .phantom ? PhantomCases.messageBytes(shape: config.data.phantomShape) : 0
        let bound = config.memoryBound(patchBytes: patchBytes, volumeBytes: volume)
        return "\(bound / 1_000_000) MB for 96³ patches" + (config.data.source == .phantom
            ? " and phantom volumes" : " plus the loader → cropper edge (whole volumes)")
    }
}
