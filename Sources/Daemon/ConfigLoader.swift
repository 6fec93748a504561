import Foundation
import Stages
import Yams

/// Reads `conf/*.yaml` into a validated `PipelineConfig`. Every key is checked: an unknown key
/// or a bad value is an error naming its key path (`stages.sampler.replicas`) and the file.
enum ConfigLoader {
    static func load(path: String) throws -> PipelineConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, keyPath: "(file)", "cannot be read: \(error.localizedDescription)")
        }
        do {
            return try parse(text, baseDirectory: URL(fileURLWithPath: path).deletingLastPathComponent().path)
        } catch let error as ConfigError {
            throw error.inFile(path)
        }
    }

    static func parse(_ text: String, baseDirectory: String = ".") throws -> PipelineConfig {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw ConfigError(keyPath: "(top level)", "the file is empty") }
            root = node
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError(keyPath: "(syntax)", "is not valid YAML: \(error)")
        }
        let top = try ConfigReader(root, path: "")
        var config = PipelineConfig()
        if let seed = try top.int("seed", in: 0...Int.max) { config.seed = UInt64(seed) }
        if let names = try top.stringList("pipeline") {
            config.pipeline = try names.enumerated().map { i, n in
                guard let s = StageName(rawValue: n) else {
                    throw ConfigError(keyPath: "pipeline[\(i)]",
                                      "unknown stage '\(n)' (stages: \(StageName.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return s
            }
        }
        if let r = try top.mapping("runtime") {
            if let v = try r.double("status_interval_s", in: 0.1...3600) { config.runtime.statusInterval = v }
            if let v = try r.double("idle_timeout_s", in: 0.05...3600) { config.runtime.idleTimeout = v }
            if let v = try r.double("drain_timeout_s", in: 0...86400) { config.runtime.drainTimeout = v }
            if let v = try r.int("linger_ms", in: 0...3_600_000) { config.runtime.lingerMilliseconds = v }
            config.runtime.stateDirectory = try r.string("state_dir").map { resolve($0, baseDirectory) }
            try r.finish()
        }
        if let stages = try top.mapping("stages") {
            for key in stages.keys {
                guard let name = StageName(rawValue: key) else {
                    _ = stages.node(key)
                    throw ConfigError(keyPath: stages.child(key),
                                      "unknown stage (stages: \(StageName.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                guard let s = try stages.mapping(key) else { config.stages[name] = StageConfig(); continue }
                var c = StageConfig()
                if let v = try s.int("replicas", in: 1...64) { c.replicas = v }
                if let v = try s.int("threads", in: 1...256) { c.threads = v }
                c.input = try s.string("input")
                if let v = try s.int("hwm", in: 1...100_000) { c.hwm = v }
                c.tap = try s.string("tap")
                if let v = try s.int("tap_hwm", in: 1...100_000) { c.tapHWM = v }
                c.output = try s.string("output")
                if let v = try s.int("output_hwm", in: 1...100_000) { c.outputHWM = v }
                c.control = try s.string("control")
                if let v = try s.int("delay_ms", in: 0...600_000) { c.delayMilliseconds = v }
                try s.finish()
                config.stages[name] = c
            }
            try stages.finish()
        }
        if let d = try top.mapping("data") {
            if let v = try d.string("source", as: DataConfig.Source.self) { config.data.source = v }
            config.data.manifest = try d.string("manifest").map { resolve($0, baseDirectory) }
            if let p = try d.mapping("phantom") {
                if let v = try p.int("cases", in: 1...10_000) { config.data.phantomCases = v }
                if let v = try p.int("seed", in: 0...Int.max) { config.data.phantomSeed = UInt64(v) }
                if let v = try p.intList("shape", count: 3, in: 96...1024) { config.data.phantomShape = v }
                try p.finish()
            }
            if let v = try d.string("organ") {
                guard ["liver", "pancreas", "kidney"].contains(v) else {
                    throw ConfigError(keyPath: d.child("organ"), "must be one of liver, pancreas, kidney, got '\(v)'")
                }
                config.data.organ = v
            }
            if let v = try d.int("patches_per_case", in: 1...100_000) { config.data.patchesPerCase = v }
            config.data.maxPatches = try d.int("max_patches", in: 1...Int.max)
            try d.finish()
        }
        if let s = try top.mapping("synthesis") {
            if let v = try s.string("engine", as: SynthesisConfig.Engine.self) { config.synthesis.engine = v }
            if let v = try s.double("synthesize_probability", in: 0...1) { config.synthesis.synthesizeProbability = v }
            if let t = try s.mapping("tumor_types") {
                var types: [String: Double] = [:]
                for k in ["tiny", "small", "medium", "large"] {
                    if let v = try t.double(k, in: 0...1) { types[k] = v }
                }
                try t.finish()
                let sum = types.values.reduce(0, +)
                guard abs(sum - 1) < 1e-6 else {
                    throw ConfigError(keyPath: t.path, "probabilities must add up to 1, they add up to \(sum)")
                }
                config.synthesis.tumorTypes = types
            }
            if let v = try s.int("sampler_batch", in: 1...64) { config.synthesis.samplerBatch = v }
            try s.finish()
        }
        if let m = try top.mapping("models") {
            config.models.autoencoder = try m.string("autoencoder").map { resolve($0, baseDirectory) }
            config.models.diffusionEarly = try m.string("diffusion_early").map { resolve($0, baseDirectory) }
            config.models.diffusionNoEarly = try m.string("diffusion_noearly").map { resolve($0, baseDirectory) }
            try m.finish()
        }
        if let w = try top.mapping("writer") {
            if let v = try w.string("out_dir") { config.writer.outputDirectory = v }
            if let v = try w.bool("hu_int16") { config.writer.huInt16 = v }
            if let v = try w.bool("compress") { config.writer.compress = v }
            try w.finish()
        }
        if let t = try top.mapping("trainer") {
            if let v = try t.string("out_dir") { config.trainer.outputDirectory = v }
            if let v = try t.double("learning_rate", in: 1e-12...10) { config.trainer.learningRate = v }
            if let v = try t.int("warmup_steps", in: 0...100_000_000) { config.trainer.warmupSteps = v }
            if let v = try t.int("total_steps", in: 1...100_000_000) { config.trainer.totalSteps = v }
            if let v = try t.int("batch_size", in: 1...1024) { config.trainer.batchSize = v }
            if let v = try t.int("checkpoint_every", in: 1...Int.max) { config.trainer.checkpointEvery = v }
            if let v = try t.intListAnyLength("channels", in: 1...4096) { config.trainer.channels = v }
            if config.trainer.totalSteps <= config.trainer.warmupSteps {
                throw ConfigError(keyPath: t.child("total_steps"), "must exceed trainer.warmup_steps (\(config.trainer.warmupSteps))")
            }
            if config.trainer.channels.count < 2 {
                throw ConfigError(keyPath: t.child("channels"), "needs at least two levels")
            }
            try t.finish()
        }
        try top.finish()
        try config.validate()
        return config
    }

    /// Relative paths in a config are relative to the working directory (run tumord from the
    /// project root); `~` is expanded.
    private static func resolve(_ path: String, _ base: String) -> String {
        (path as NSString).expandingTildeInPath
    }
}
