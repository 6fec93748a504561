import Foundation
import Imaging
import Kernels
import Synthesis

/// The learning run on the built-in phantom with procedural tumors, sampled as the reference's
/// STEP3 samples its training data (reference/difftumor.md §3–5):
/// - the training list mixes "real-tumor" scans (phantoms with procedural tumors synthesized into
///   the whole scan beforehand, cropped with `RandCropByPosNegLabeld(pos=1, neg=1)`, first crop
///   kept) and healthy scans (same crop rule with the foreground re-draw rule, then on-the-fly
///   procedural synthesis with probability 0.5 and the reference's tumor-type draw);
/// - held-out evaluation runs on whole unseen phantom scans (tumors synthesized the same way),
///   sliding window at the training patch size, overlap 0.5, Gaussian blending, DSC and NSD at
///   2 mm, with and without the reference's organ pseudo-label masking of the tumor (the
///   phantom's own liver label stands in for the pseudo-label).
///
/// tumorbench trainer-learn [--steps 1200] [--patch 96] [--channels 8,16,32,64] [--batch 1]
///   [--lr 2e-3] [--warmup 50] [--real-scans 3] [--healthy-scans 3] [--heldout 3]
///   [--tumors-per-scan 3] [--save DIR] [--save-every 200] [--resume DIR] [--log-every 25]
///   [--shape 200,160,160]
enum TrainerPhantomRun {
    struct Scan {
        var source: CropSource
        var real: Bool
    }

    static func run(_ args: [String]) {
        func opt(_ name: String, _ d: String) -> String {
            if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
            return d
        }
        let steps = Int(opt("--steps", "1200"))!, patch = Int(opt("--patch", "96"))!, batch = Int(opt("--batch", "1"))!
        let channels = opt("--channels", "8,16,32,64").split(separator: ",").map { Int($0)! }
        let shape = opt("--shape", "200,160,160").split(separator: ",").map { Int($0)! }
        let lr = Double(opt("--lr", "2e-3"))!, warmup = Int(opt("--warmup", "50"))!
        let realScans = Int(opt("--real-scans", "3"))!, healthyScans = Int(opt("--healthy-scans", "3"))!
        let heldOutCount = Int(opt("--heldout", "3"))!, tumorsPerScan = Int(opt("--tumors-per-scan", "3"))!
        let saveEvery = Int(opt("--save-every", "200"))!, logEvery = Int(opt("--log-every", "25"))!
        let saveDir = args.firstIndex(of: "--save").flatMap { $0 + 1 < args.count ? URL(fileURLWithPath: args[$0 + 1]) : nil }
        BLASCoreType.reexecIfUnrecognised()
        KernelContext.threads = 2
        print("phantom learning run: UNet \(channels), patch \(patch)³, batch \(batch), \(steps) steps, lr \(lr), "
              + "\(realScans) real-tumor + \(healthyScans) healthy training scans, \(heldOutCount) held-out scans \(shape)")
        let config = TrainerConfig(unet: UNetConfig(channels: channels, strides: Array(repeating: 2, count: channels.count - 1)),
                                   schedule: LRSchedule(baseLR: lr, warmupSteps: warmup, totalSteps: steps), seed: 7)
        let trainer: SegmentationTrainer
        if let i = args.firstIndex(of: "--resume"), i + 1 < args.count {
            do { trainer = try SegmentationTrainer(resumingFrom: URL(fileURLWithPath: args[i + 1])) } catch {
                print("cannot resume from \(args[i + 1]): \(error)"); exit(1)
            }
            print("resumed at step \(trainer.stepCount)")
        } else {
            trainer = SegmentationTrainer(config: config)
        }
        let t0 = Date()
        let synthesizer = PatchSynthesizer(organ: .liver, policy: .reference, patchSize: patch)
        let realCropper = OrganCropper(foregroundRadius: nil, patchSize: patch)

        if trainer.stepCount < steps {
            // Training scans: seeds 100…; the first `realScans` get whole-scan tumors ("real").
            var scans: [Scan] = []
            for i in 0..<(realScans + healthyScans) {
                let real = i < realScans
                let (ct, label) = preparedScan(seed: UInt64(100 + i), shape: shape, tumors: real ? tumorsPerScan : 0,
                                               synthesizer: synthesizer)
                let grid = GridSize(ct.shape[0], ct.shape[1], ct.shape[2])
                let mask = MaskGrid(size: grid, voxels: label.labels)
                let source = try! (real ? realCropper.prepare(ct: ct.voxels, label: mask)
                                        : synthesizer.prepare(ct: ct.voxels, organMask: mask))
                scans.append(Scan(source: source, real: real))
            }
            print(String(format: "prepared %d training scans in %.1f s", scans.count, Date().timeIntervalSince(t0)))
            var pick = SplitMix64(seed: 2024)
            var windowLoss: [Float] = [], windowPatches = 0, synthesized = 0, fromReal = 0, total = 0
            var windowStart = Date()
            for s in stride(from: trainer.stepCount + 1, through: steps, by: 1) {
                let samples = (0..<batch).map { b -> TrainingSample in
                    let scan = scans[Int(pick.next() % UInt64(scans.count))]
                    let seed = UInt64(s) &* 1_000_003 &+ UInt64(b)
                    let ct: Tensor, label: [UInt8]
                    if scan.real {
                        var rng = SynthRandom(seed: seed, stream: .cropper)
                        let p = try! realCropper.crop(scan.source, healthy: false, rng: &rng)
                        (ct, label) = (p.ct, p.label.voxels)
                        fromReal += 1
                    } else {
                        let planned = try! synthesizer.plan(source: scan.source, healthy: true, seed: seed)
                        let done = synthesizer.paintProcedural(planned)
                        (ct, label) = (done.ct, done.label.voxels)
                        if planned.isSynthesized { synthesized += 1 }
                    }
                    total += 1
                    return TrainingSample(ct: ct, label: label)
                }
                windowLoss.append(trainer.step(batch: samples))
                windowPatches += batch
                if s % logEvery == 0 || s == steps {
                    let mean = windowLoss.reduce(0, +) / Float(windowLoss.count)
                    let rate = Double(windowPatches) / Date().timeIntervalSince(windowStart)
                    print(String(format: "step %d loss %.4f lr %.2e  %.2f patches/s  real %.0f%% synthetic %.0f%% healthy %.0f%%  %.0f s",
                                 s, mean, trainer.currentLR, rate,
                                 100 * Double(fromReal) / Double(total), 100 * Double(synthesized) / Double(total),
                                 100 * Double(total - fromReal - synthesized) / Double(total),
                                 Date().timeIntervalSince(t0)))
                    fflush(stdout)
                    windowLoss.removeAll(); windowPatches = 0; windowStart = Date()
                }
                if let saveDir, s % saveEvery == 0 { try? trainer.saveCheckpoint(to: saveDir) }
            }
            if let saveDir { try? trainer.saveCheckpoint(to: saveDir) }
            print(String(format: "trained %d steps in %.0f s", steps, Date().timeIntervalSince(t0)))
        }

        // Held-out: unseen phantom seeds with whole-scan procedural tumors.
        let t1 = Date()
        var cases: [(ct: Volume, label: LabelVolume)] = []
        var organs: [[UInt8]] = []
        for j in 0..<heldOutCount {
            let (ct, label) = preparedScan(seed: UInt64(900 + j), shape: shape, tumors: tumorsPerScan, synthesizer: synthesizer)
            cases.append((ct, label))
            organs.append(label.labels.map { $0 > 0 ? 1 : 0 })
            let tumorVoxels = label.labels.reduce(0) { $0 + ($1 == 2 ? 1 : 0) }
            print("held-out scan \(j): seed \(900 + j), \(ct.shape), tumor voxels \(tumorVoxels)")
        }
        let window = SlidingWindow(roiSize: [patch, patch, patch], overlap: 0.5)
        // One prediction per scan, scored without and with the organ pseudo-label masking.
        var plainCases: [[ClassMetrics]] = [], maskedCases: [[ClassMetrics]] = []
        for (i, c) in cases.enumerated() {
            var pred = SlidingWindow.argmax(trainer.predictLogits(volume: c.ct.voxels, window: window))
            plainCases.append(SegmentationMetrics.evaluate(label: c.label.labels, prediction: pred, dims: c.label.shape,
                                                           spacingMM: c.label.spacing))
            SegmentationMetrics.maskTumor(&pred, organ: organs[i])
            maskedCases.append(SegmentationMetrics.evaluate(label: c.label.labels, prediction: pred, dims: c.label.shape,
                                                            spacingMM: c.label.spacing))
            print("held-out case \(i): \(plainCases[i].map(\.description).joined(separator: "; "))")
            print("  with organ masking: \(maskedCases[i].map(\.description).joined(separator: "; "))")
            fflush(stdout)
        }
        let plain = ValidationResult(perCase: plainCases), masked = ValidationResult(perCase: maskedCases)
        print("held-out mean (no masking): \(plain)")
        print("held-out mean (tumor ∧ organ pseudo-label): \(masked)")
        print(String(format: "evaluation took %.0f s", Date().timeIntervalSince(t1)))
    }

    /// A phantom windowed to [0, 1] with labels 0/1 (liver) or 0/1/2 after `tumors` procedural
    /// tumors synthesized into the whole scan (type drawn with the reference's policy).
    static func preparedScan(seed: UInt64, shape: [Int], tumors: Int, synthesizer: PatchSynthesizer) -> (Volume, LabelVolume) {
        let (hu, labels) = Phantom.generate(seed: seed, shape: shape)
        let liver = labels.mask(of: [5])
        if tumors == 0 { return (hu.windowed(), liver) }
        var scan = try! ScanSynthesis(ct: hu, organLabel: liver, organ: .liver)
        var draw = SynthRandom(seed: seed ^ 0xC0FFEE)
        for t in 0..<tumors {
            let sizeClass = synthesizer.policy.drawSizeClass(rng: &draw)
            guard let planned = try? scan.plan(synthesizer, seed: seed &* 31 &+ UInt64(t), sizeClass: sizeClass) else { continue }
            scan.apply(synthesizer.paintProcedural(planned))
        }
        return (scan.volume, scan.label)
    }
}
