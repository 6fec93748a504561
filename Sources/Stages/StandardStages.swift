/// The stages of the product, by name, built from the config.
public enum StandardStages {
    public static func role(_ stage: StageName, _ config: PipelineConfig) throws -> StageSpec.Role {
        throw ConfigError(keyPath: "pipeline", "stage \(stage) is not available in this build yet")
    }

    public static func memoryBoundDescription(_ config: PipelineConfig) -> String {
        let patch = 96 * 96 * 96 * (4 + 1 + 1)
        return "\(config.memoryBound(patchBytes: patch, volumeBytes: 0) / 1_000_000) MB"
    }
}
