/// The validated description of a pipeline: the graph (stages, replicas, endpoints, HWMs,
/// thread budgets), the data, the synthesis settings, the model paths and the sink's settings.
/// `Daemon` reads it from YAML (`conf/*.yaml`, every key checked); tests build it in code.
public struct PipelineConfig: Sendable {
    public var seed: UInt64 = 0
    /// Stage order, loader first, a sink (writer or trainer) last.
    public var pipeline: [StageName] = [.loader, .cropper, .encoder, .sampler, .blender, .writer]
    public var stages: [StageName: StageConfig] = [:]
    public var data = DataConfig()
    public var synthesis = SynthesisConfig()
    public var models = ModelsConfig()
    public var writer = WriterConfig()
    public var trainer = TrainerSettings()
    public var runtime = RuntimeConfig()

    public init() {}

    public func stage(_ name: StageName) -> StageConfig { stages[name] ?? StageConfig() }

    /// The stage after `name` in the pipeline, if any.
    public func next(after name: StageName) -> StageName? {
        guard let i = pipeline.firstIndex(of: name), i + 1 < pipeline.count else { return nil }
        return pipeline[i + 1]
    }

    public func previous(before name: StageName) -> StageName? {
        guard let i = pipeline.firstIndex(of: name), i > 0 else { return nil }
        return pipeline[i - 1]
    }

    /// Cross-field checks; each error names the key path.
    public func validate() throws {
        guard pipeline.first == .loader else {
            throw ConfigError(keyPath: "pipeline", "must start with loader, got \(pipeline.map(\.rawValue))")
        }
        guard let last = pipeline.last, last == .writer || last == .trainer || stage(last).output != nil,
              pipeline.count >= 2 else {
            throw ConfigError(keyPath: "pipeline", "must end with writer or trainer, or with a stage that has an output"
                              + " endpoint for an external reader; got \(pipeline.map(\.rawValue))")
        }
        for (i, name) in pipeline.enumerated() {
            if pipeline[..<i].contains(name) { throw ConfigError(keyPath: "pipeline", "lists \(name) twice") }
            if i > 0 && i < pipeline.count - 1 && (name == .writer || name == .trainer || name == .loader) {
                throw ConfigError(keyPath: "pipeline", "\(name) can only be \(name == .loader ? "first" : "last")")
            }
        }
        var bound: [String: String] = [:]
        for name in pipeline {
            let s = stage(name)
            let key = "stages.\(name)"
            if name == .loader {
                if s.input != nil { throw ConfigError(keyPath: "\(key).input", "the loader has no input") }
            } else if s.input == nil {
                throw ConfigError(keyPath: "\(key).input", "missing: every stage after the loader needs an input endpoint")
            }
            if s.output != nil && (name != last || name == .writer || name == .trainer) {
                throw ConfigError(keyPath: "\(key).output", name == last ? "a \(name) has no output"
                                  : "only the last stage of the pipeline has an output (the others feed the next stage)")
            }
            if s.output?.hasPrefix("inproc://") == true {
                throw ConfigError(keyPath: "\(key).output", "must be tcp:// or ipc://: the reader is another process")
            }
            for (field, endpoint) in [("input", s.input), ("tap", s.tap), ("control", s.control), ("output", s.output)] {
                guard let endpoint else { continue }
                do { try StageEndpoints.validate(endpoint) } catch {
                    throw ConfigError(keyPath: "\(key).\(field)", "\(error)")
                }
                for r in 0..<s.replicas {
                    let e = StageEndpoints.forReplica(endpoint, r)
                    if e.hasSuffix(":*") { continue }
                    if let other = bound[e] {
                        throw ConfigError(keyPath: "\(key).\(field)", "endpoint \(e) (replica \(r)) is also used by \(other)")
                    }
                    bound[e] = "\(key).\(field)"
                }
            }
            if s.input?.hasSuffix(":*") == true {
                throw ConfigError(keyPath: "\(key).input", "an input needs a fixed port: the upstream stage connects to it")
            }
        }
        if pipeline.contains(.trainer) && stage(.trainer).replicas != 1 {
            throw ConfigError(keyPath: "stages.trainer.replicas", "must be 1: replicas would write checkpoints over each other")
        }
        let known = Set(pipeline)
        for name in stages.keys where !known.contains(name) {
            throw ConfigError(keyPath: "stages.\(name)", "is configured but not in pipeline \(pipeline.map(\.rawValue))")
        }
        if synthesis.engine == .diffusion {
            for (k, v) in [("models.autoencoder", models.autoencoder), ("models.diffusion_early", models.diffusionEarly),
                           ("models.diffusion_noearly", models.diffusionNoEarly)] where v == nil {
                throw ConfigError(keyPath: k, "required by synthesis.engine: diffusion")
            }
        }
        if data.source == .manifest && data.manifest == nil {
            throw ConfigError(keyPath: "data.manifest", "required by data.source: manifest")
        }
    }

    /// Bytes the queues of the graph can hold at most, for messages of `patchBytes` (96³ patches)
    /// and `volumeBytes` (loader → cropper messages carry a whole volume): every edge holds at most
    /// (sender HWM + receiver HWM) messages per sender/receiver pair, and every replica holds one
    /// message it works on plus one it is sending. (For tcp edges add the kernel socket buffers.)
    public func memoryBound(patchBytes: Int, volumeBytes: Int) -> Int {
        var total = 0
        for (i, name) in pipeline.enumerated() {
            let s = stage(name)
            let bytesOut = name == .loader ? volumeBytes : patchBytes
            let bytesIn = i <= 1 ? volumeBytes : patchBytes
            total += s.replicas * (bytesIn + bytesOut)
            if let next = next(after: name) {
                let n = stage(next)
                total += s.replicas * n.replicas * (n.hwm + n.hwm) * bytesOut
            }
        }
        return total
    }
}

/// One stage's part of the graph.
public struct StageConfig: Sendable, Equatable {
    public var replicas = 1
    /// OpenBLAS threads for this stage's work.
    public var threads = 1
    /// Endpoint this stage binds for its input (replica K: see `StageEndpoints`).
    public var input: String?
    /// High-water mark of the edge into this stage, in messages, applied to both the upstream
    /// PUSH (send) and this stage's PULL (receive).
    public var hwm = 2
    public var tap: String?
    public var tapHWM = 2
    /// Last stage only: an endpoint this stage binds a PUSH socket on for external readers
    /// (the Python client), instead of feeding a writer or trainer.
    public var output: String?
    /// Send high-water mark of `output`, in messages.
    public var outputHWM = 4
    public var control: String?
    /// Artificial delay per patch in milliseconds (for backpressure demonstrations); 0 normally.
    public var delayMilliseconds = 0
    public init() {}
}

/// Timing of status lines and shutdown.
public struct RuntimeConfig: Sendable, Equatable {
    /// Seconds between status lines.
    public var statusInterval: Double = 2
    /// Seconds of quiet input after which a draining stage stops (see `DrainStateMachine`).
    public var idleTimeout: Double = 2
    /// Seconds a stage keeps draining after SIGTERM when no end-of-stream marker comes.
    public var drainTimeout: Double = 30
    /// Milliseconds closing an output may keep delivering queued messages.
    public var lingerMilliseconds = 10_000
    /// Where `tumord stage` processes keep their journals (restart accounting); nil: a
    /// per-config directory under the system's temporary directory.
    public var stateDirectory: String?
    public init() {}
}

public struct DataConfig: Sendable, Equatable {
    public enum Source: String, Sendable, CaseIterable { case phantom, manifest }
    public var source: Source = .phantom
    /// Manifest file (data.source: manifest).
    public var manifest: String?
    /// Phantom cases to generate (data.source: phantom), seeded from `phantomSeed + case`.
    public var phantomCases = 2
    public var phantomSeed: UInt64 = 1
    /// Phantom grid [X, Y, Z] in 1 mm voxels (the anatomy scales with it); nil: Imaging's default.
    public var phantomShape: [Int]?
    /// The organ tumors are painted into.
    public var organ = "liver"
    /// Consecutive patches cut from one loaded case before the loader moves on.
    public var patchesPerCase = 4
    /// Stop after this many patches (`--max-patches`); nil: run until stopped.
    public var maxPatches: Int?
    public init() {}
}

public struct SynthesisConfig: Sendable, Equatable {
    public enum Engine: String, Sendable, CaseIterable { case procedural, diffusion }
    public var engine: Engine = .procedural
    /// Probability that a crop of a healthy scan is chosen for synthesis (reference: 0.5).
    public var synthesizeProbability = 0.5
    /// Tumor type probabilities (reference: early 0.8 split tiny/small, medium 0.1, large 0.1).
    public var tumorTypes: [String: Double] = ["tiny": 0.4, "small": 0.4, "medium": 0.1, "large": 0.1]
    /// Patches the sampler runs through the denoiser together.
    public var samplerBatch = 1
    public init() {}
}

public struct ModelsConfig: Sendable, Equatable {
    public var autoencoder: String?
    public var diffusionEarly: String?
    public var diffusionNoEarly: String?
    public init() {}
}

public struct WriterConfig: Sendable, Equatable {
    /// Directory the writer saves `<patch>_ct.nii.gz` and `<patch>_label.nii.gz` into.
    public var outputDirectory = "out/patches"
    /// Write the CT as HU int16 (smaller) instead of float32 in [0,1].
    public var huInt16 = false
    /// gzip the files (`.nii.gz`); false writes `.nii`, several times faster.
    public var compress = true
    public init() {}
}

/// The online trainer sink (Kernels.SegmentationTrainer: MONAI UNet, DiceCE, AdamW).
public struct TrainerSettings: Sendable, Equatable {
    /// Checkpoints go to `out_dir/step-NNNNNNNN/`; a restarted trainer resumes from the latest.
    public var outputDirectory = "runs/default"
    public var learningRate = 4e-4
    public var warmupSteps = 100
    public var totalSteps = 2000
    public var batchSize = 1
    /// Optimizer steps between checkpoints (and one at shutdown).
    public var checkpointEvery = 100
    /// UNet channels per level (reference: 16, 32, 64, 128, 256); smaller for demos and tests.
    public var channels = [16, 32, 64, 128, 256]
    public init() {}
}

/// A configuration problem: which key and what is wrong with it.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String?
    public let keyPath: String
    public let problem: String

    public init(file: String? = nil, keyPath: String, _ problem: String) {
        self.file = file
        self.keyPath = keyPath
        self.problem = problem
    }

    public func inFile(_ file: String) -> ConfigError { ConfigError(file: file, keyPath: keyPath, problem) }

    public var description: String {
        (file.map { "\($0): " } ?? "") + "config key '\(keyPath)': \(problem)"
    }
}
