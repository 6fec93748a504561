import Foundation

/// Settings of the online segmentation trainer (reference: difftumor.md §5).
public struct TrainerConfig: Codable, Equatable, Sendable {
    public var unet: UNetConfig
    public var schedule: LRSchedule
    public var weightDecay: Double
    /// Seed of the parameter init.
    public var seed: UInt64

    public init(unet: UNetConfig = .reference, schedule: LRSchedule = LRSchedule(),
                weightDecay: Double = 1e-5, seed: UInt64 = 0) {
        self.unet = unet; self.schedule = schedule; self.weightDecay = weightDecay; self.seed = seed
    }
}

/// One labelled training patch: CT [1, D, H, W] (or [D, H, W]) scaled to [0, 1], and one class
/// index per voxel (0 background, 1 organ, 2 tumor) in the same D, H, W order.
public struct TrainingSample {
    public var ct: Tensor
    public var label: [UInt8]
    public init(ct: Tensor, label: [UInt8]) { self.ct = ct; self.label = label }
}

/// The online trainer: a MONAI UNet, DiceCE loss, AdamW with warm-up + cosine schedule, and
/// checkpoints (weights + optimizer moments + step) that a restarted trainer resumes from.
///
/// Use: `let t = try SegmentationTrainer.resumeOrStart(config: c, checkpointDirectory: dir)`,
/// then `t.step(batch:)` per batch, `t.saveCheckpoint(to: dir)` every N steps and at shutdown,
/// `t.predict(volume:)` (sliding window) for validation.
public final class SegmentationTrainer {
    public let config: TrainerConfig
    public private(set) var model: UNet
    public private(set) var optimizer: AdamW
    /// Loss of the most recent step.
    public private(set) var lastLoss: Float = .nan

    /// Optimizer steps taken so far (survives a resume).
    public var stepCount: Int { optimizer.step }

    public init(config: TrainerConfig = TrainerConfig()) {
        self.config = config
        self.model = UNet(config: config.unet, seed: config.seed)
        self.optimizer = AdamW(weightDecay: Float(config.weightDecay))
    }

    /// One optimizer step on a batch; returns the DiceCE loss before the update.
    @discardableResult
    public func step(batch: [TrainingSample]) -> Float {
        precondition(!batch.isEmpty, "SegmentationTrainer.step: empty batch")
        let spatial = Array(batch[0].ct.shape.suffix(3))
        let inner = spatial.reduce(1, *)
        precondition(batch.allSatisfy { $0.ct.count == inner * config.unet.inChannels && $0.label.count == inner },
                     "SegmentationTrainer.step: every sample needs \(config.unet.inChannels)×\(spatial) CT and \(inner) labels")
        var x = Tensor(uninitialized: [batch.count, config.unet.inChannels] + spatial)
        var labels: [UInt8] = []
        labels.reserveCapacity(batch.count * inner)
        x.withUnsafeMutableBufferPointer { xp in
            for (b, s) in batch.enumerated() {
                s.ct.withUnsafeBufferPointer { (xp.baseAddress! + b * s.ct.count).update(from: $0.baseAddress!, count: s.ct.count) }
                labels += s.label
            }
        }
        let tape = Tape()
        let bound = model.bind(to: tape)
        let logits = model.forward(tape.constant(x), on: tape, parameters: bound)
        let loss = tape.diceCELoss(logits: logits, labels: labels)
        let grads = tape.gradients(of: loss)
        var byName: [String: Tensor] = [:]
        for (name, v) in bound { if let g = grads[v] { byName[name] = g } }
        lastLoss = tape[loss][flat: 0]
        // Drop the activations and the tape's references to the parameters before the update, so
        // that AdamW updates the parameters in place.
        tape.nodes.removeAll()
        let lr = Float(config.schedule.lr(step: optimizer.step))
        optimizer.update(parameters: &model.parameters, gradients: byName, lr: lr)
        return lastLoss
    }

    /// The learning rate the next step will use.
    public var currentLR: Double { config.schedule.lr(step: optimizer.step) }

    /// Logits for a whole volume [D, H, W] (CT in [0, 1]) by sliding-window inference.
    public func predictLogits(volume: Tensor, window: SlidingWindow = SlidingWindow()) -> Tensor {
        window.infer(volume: volume, classes: config.unet.outChannels) { model.predict($0) }
    }

    /// Restores weights, optimizer state and step from a checkpoint written by `saveCheckpoint`.
    public init(resumingFrom directory: URL) throws {
        let ckpt = try Checkpoint.load(from: directory)
        self.config = ckpt.config
        self.model = UNet(config: ckpt.config.unet, seed: ckpt.config.seed)
        try model.load(stateDict: ckpt.weights)
        self.optimizer = AdamW(weightDecay: Float(ckpt.config.weightDecay))
        optimizer.step = ckpt.step
        for s in model.specs {
            optimizer.exp[s.name] = ckpt.optimizerState["exp_avg." + s.name]
            optimizer.expSquared[s.name] = ckpt.optimizerState["exp_avg_sq." + s.name]
        }
    }

    /// Resumes from the latest checkpoint under `checkpointDirectory` if there is one (its
    /// config wins over `config`), else starts fresh.
    public static func resumeOrStart(config: TrainerConfig, checkpointDirectory: URL) throws -> SegmentationTrainer {
        if Checkpoint.latest(in: checkpointDirectory) != nil {
            return try SegmentationTrainer(resumingFrom: checkpointDirectory)
        }
        return SegmentationTrainer(config: config)
    }

    /// Writes weights (`model.safetensors`, MONAI names), optimizer moments and the step under
    /// `directory/step-NNNNNNNN/`, then points `directory/latest` at it. Keeps the two newest.
    public func saveCheckpoint(to directory: URL) throws {
        var opt: [(String, Tensor)] = []
        for s in model.specs {
            if let m = optimizer.exp[s.name] { opt.append(("exp_avg." + s.name, m)) }
            if let v = optimizer.expSquared[s.name] { opt.append(("exp_avg_sq." + s.name, v)) }
        }
        try Checkpoint(config: config, step: optimizer.step, weights: Dictionary(uniqueKeysWithValues: model.stateDict()),
                       optimizerState: Dictionary(uniqueKeysWithValues: opt))
            .save(to: directory, order: model.specs.map(\.name))
    }
}
