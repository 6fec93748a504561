import Foundation
import Kernels
import Logging
import Wire

/// The online trainer as the pipeline's sink (Kernels.SegmentationTrainer: MONAI UNet, DiceCE,
/// AdamW with warm-up + cosine). Collects `trainer.batch_size` patches per optimizer step,
/// writes a checkpoint every `trainer.checkpoint_every` steps and at the end of the stream or
/// on shutdown (`finish`), and resumes from the latest checkpoint in `trainer.out_dir` when
/// restarted. Progress in the status line (gauges `step`, `loss`, `patches_per_s` over the
/// last steps, `synthetic_share` of trained patches that carry a synthesized tumor and
/// `real_share` of the others) and a log line every `logEvery` steps with the same numbers.
public final class TrainerStage: PatchProcessor {
    let trainer: SegmentationTrainer
    let settings: TrainerSettings
    let directory: URL
    private var batch: [TrainingSample] = []
    private var trained: UInt64 = 0
    private var checkpoints: UInt64 = 0
    private var stepsSinceCheckpoint = 0
    private var synthetic: UInt64 = 0
    /// Patches and seconds of the recent steps (the patches/s window, last 10 steps).
    private var recent: [(patches: Int, seconds: Double)] = []
    private var logger = Logger(label: "tumord.trainer")
    /// Steps between progress log lines.
    public var logEvery = 10

    public init(config: PipelineConfig) throws {
        settings = config.trainer
        directory = URL(fileURLWithPath: settings.outputDirectory)
        var c = TrainerConfig()
        c.unet = UNetConfig(channels: settings.channels, strides: Array(repeating: 2, count: settings.channels.count - 1))
        c.schedule = LRSchedule(baseLR: settings.learningRate, warmupSteps: settings.warmupSteps, totalSteps: settings.totalSteps)
        c.seed = config.seed
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            trainer = try SegmentationTrainer.resumeOrStart(config: c, checkpointDirectory: directory)
        } catch {
            throw ConfigError(keyPath: "trainer.out_dir", "cannot start or resume the trainer in '\(settings.outputDirectory)': \(error)")
        }
    }

    /// Config checks done before any thread starts.
    @discardableResult
    public static func validate(_ config: PipelineConfig) throws -> Bool {
        let levels = config.trainer.channels.count
        guard levels >= 2 else { throw ConfigError(keyPath: "trainer.channels", "needs at least two levels") }
        let multiple = 1 << (levels - 1)
        guard 96 % multiple == 0 else {
            throw ConfigError(keyPath: "trainer.channels", "\(levels) levels need patches divisible by \(multiple); 96 is not")
        }
        return true
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        guard let ct = patch.tensor(Payload.ct), ct.rank == 3 else {
            throw StageRejection("bad-payload", "trainer: patch \(patch.patchID) has no float32 [X,Y,Z] ct")
        }
        guard let (label, shape) = patch.bytes(Payload.label), shape == ct.shape else {
            throw StageRejection("bad-payload", "trainer: patch \(patch.patchID) has no uint8 label of shape \(ct.shape)")
        }
        let multiple = trainer.config.unet.sizeMultiple
        guard ct.shape.allSatisfy({ $0 % multiple == 0 }) else {
            throw StageRejection("bad-shape", "trainer: patch \(patch.patchID) shape \(ct.shape) is not a multiple of \(multiple)")
        }
        guard !label.contains(where: { $0 > 2 }) else {
            throw StageRejection("bad-label", "trainer: patch \(patch.patchID) has label values above 2")
        }
        batch.append(TrainingSample(ct: ct, label: label))
        trained += 1
        if patch.synthesize && patch.tumorType != .none { synthetic += 1 }
        if batch.count >= settings.batchSize { try step() }
        return nil
    }

    private func step() throws {
        guard !batch.isEmpty else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        trainer.step(batch: batch)
        recent.append((batch.count, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
        if recent.count > 10 { recent.removeFirst(recent.count - 10) }
        batch.removeAll(keepingCapacity: true)
        if trainer.stepCount % max(1, logEvery) == 0 {
            let loss = String(format: "%.4f", trainer.lastLoss), lr = String(format: "%.2e", trainer.currentLR)
            let rate = String(format: "%.2f", patchesPerSecond)
            let synth = String(format: "%.0f", 100 * syntheticShare), real = String(format: "%.0f", 100 * (1 - syntheticShare))
            let message = "trainer step \(trainer.stepCount) loss \(loss) lr \(lr) \(rate) patches/s synthetic \(synth)% real \(real)% (\(trained) patches)"
            logger.info(Logger.Message(stringLiteral: message))
        }
        stepsSinceCheckpoint += 1
        if stepsSinceCheckpoint >= settings.checkpointEvery { try checkpoint() }
    }

    private func checkpoint() throws {
        try trainer.saveCheckpoint(to: directory)
        checkpoints += 1
        stepsSinceCheckpoint = 0
    }

    /// A partial last batch still trains; then a checkpoint is written.
    public func finish() throws {
        try step()
        if stepsSinceCheckpoint > 0 || checkpoints == 0 { try checkpoint() }
    }

    /// Training throughput over the last (up to 10) steps, step time only.
    public var patchesPerSecond: Double {
        let seconds = recent.reduce(0) { $0 + $1.seconds }
        return seconds > 0 ? Double(recent.reduce(0) { $0 + $1.patches }) / seconds : 0
    }

    /// Share of the patches received so far that carry a synthesized tumor.
    public var syntheticShare: Double { trained == 0 ? 0 : Double(synthetic) / Double(trained) }

    public func counters() -> [(name: String, value: UInt64)] {
        [("trained_patches", trained), ("synthetic_patches", synthetic), ("steps", UInt64(trainer.stepCount)),
         ("checkpoints", checkpoints)]
    }

    public func gauges() -> [(name: String, value: Double)] {
        var g: [(name: String, value: Double)] = [("step", Double(trainer.stepCount))]
        if !trainer.lastLoss.isNaN { g.append(("loss", Double(trainer.lastLoss))) }
        if !recent.isEmpty { g.append(("patches_per_s", patchesPerSecond)) }
        if trained > 0 { g += [("synthetic_share", syntheticShare), ("real_share", 1 - syntheticShare)] }
        return g
    }
}
