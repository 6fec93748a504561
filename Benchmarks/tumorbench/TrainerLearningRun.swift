import Foundation
import Imaging
import Kernels

/// A longer training run on phantom-like volumes (organ ellipsoid with texture, 0–2 spherical
/// tumors of low contrast, noise), then tumor/organ DSC and NSD on held-out volumes by
/// sliding-window inference. Usage:
/// tumorbench trainer-learn --spheres [--steps 600] [--patch 48] [--channels 8,16,32,64] [--batch 2] [--lr 1e-3] [--always-tumor] [--save DIR] [--resume DIR] [--heldout-size N]
/// (`--always-tumor`: every training patch holds 1–2 tumors instead of 0–2; `--save`: checkpoint
/// folder for the trained model. Held-out volumes are twice the patch size with the organ at
/// the training scale.)
enum TrainerLearningRun {
    static func run(_ args: [String]) {
        guard args.contains("--spheres") else { TrainerPhantomRun.run(args); return }
        func opt(_ name: String, _ d: String) -> String {
            if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
            return d
        }
        let steps = Int(opt("--steps", "600"))!, patch = Int(opt("--patch", "48"))!, batch = Int(opt("--batch", "2"))!
        let channels = opt("--channels", "8,16,32,64").split(separator: ",").map { Int($0)! }
        let lr = Double(opt("--lr", "1e-3"))!
        let alwaysTumor = args.contains("--always-tumor")
        BLASCoreType.reexecIfUnrecognised()
        KernelContext.threads = 2
        let config = TrainerConfig(unet: UNetConfig(channels: channels, strides: Array(repeating: 2, count: channels.count - 1)),
                                   schedule: LRSchedule(baseLR: lr, warmupSteps: 20, totalSteps: steps), seed: 7)
        let trainer: SegmentationTrainer
        if let i = args.firstIndex(of: "--resume"), i + 1 < args.count,
           let t = try? SegmentationTrainer(resumingFrom: URL(fileURLWithPath: args[i + 1])) {
            trainer = t
        } else {
            trainer = SegmentationTrainer(config: config)
        }
        let heldOutSize = Int(opt("--heldout-size", String(2 * patch)))!
        var rng = SplitMix64(seed: 11)
        let t0 = Date()
        var window: [Float] = []
        for s in stride(from: trainer.stepCount + 1, through: steps, by: 1) {
            let samples = (0..<batch).map { _ -> TrainingSample in
                let tumors: Int? = alwaysTumor ? 1 + Int(rng.next() % 2) : nil
                let (ct, label) = PhantomVolume.make(size: patch, rng: &rng, tumors: tumors)
                return TrainingSample(ct: Tensor(shape: [1, patch, patch, patch], data: ct), label: label)
            }
            window.append(trainer.step(batch: samples))
            if s % 25 == 0 {
                let mean = window.reduce(0, +) / Float(window.count)
                window.removeAll()
                print(String(format: "step %d loss %.4f lr %.2e  %.0f s", s, mean, trainer.currentLR, Date().timeIntervalSince(t0)))
            }
        }
        var heldOut = SplitMix64(seed: 999)
        let cases = (0..<4).map { _ -> (ct: Volume, label: LabelVolume) in
            let n = heldOutSize
            let (ct, label) = PhantomVolume.make(size: n, rng: &heldOut, tumors: 2, organScale: patch)
            let affine = Affine.diagonal(spacing: [1, 1, 1])
            return (Volume(voxels: Tensor(shape: [n, n, n], data: ct), affine: affine), LabelVolume(labels: label, shape: [n, n, n], affine: affine))
        }
        if let i = args.firstIndex(of: "--save"), i + 1 < args.count {
            try? trainer.saveCheckpoint(to: URL(fileURLWithPath: args[i + 1]))
        }
        let result = trainer.validate(cases: cases, window: SlidingWindow(roiSize: [patch, patch, patch], overlap: 0.5))
        for (i, c) in result.perCase.enumerated() { print("held-out case \(i): \(c.map(\.description).joined(separator: "; "))") }
        print("held-out mean: \(result)")
    }
}

/// Phantom-like volumes: soft-tissue background with noise, an organ ellipsoid with a smooth
/// texture, and spherical tumors inside it darker by 0.08–0.15 (≈ 35–65 HU on the [0, 1] window).
enum PhantomVolume {
    /// `organScale` (default `n`) sets the organ size in voxels, so that larger held-out volumes
    /// keep the training patches' physical scale and only add surroundings.
    static func make(size n: Int, rng: inout SplitMix64, tumors: Int? = nil, organScale: Int? = nil) -> ([Float], [UInt8]) {
        func u(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * rng.nextUnit() }
        let m = Double(organScale ?? n), half = Double(n) / 2
        let c = (half + u(-0.1, 0.1) * m, half + u(-0.1, 0.1) * m, half + u(-0.1, 0.1) * m)
        let r = (u(0.28, 0.4) * m, u(0.28, 0.4) * m, u(0.25, 0.35) * m)
        let count = tumors ?? Int(rng.next() % 3)
        var ts: [(Double, Double, Double, Double, Double)] = []
        for _ in 0..<count {
            let rad = u(2.5, 7)
            ts.append((c.0 + u(-0.5, 0.5) * r.0, c.1 + u(-0.5, 0.5) * r.1, c.2 + u(-0.5, 0.5) * r.2, rad, u(0.08, 0.15)))
        }
        let f = (u(0.2, 0.5), u(0.2, 0.5), u(0.2, 0.5))
        var ct = [Float](repeating: 0, count: n * n * n), label = [UInt8](repeating: 0, count: n * n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n {
            let idx = (i * n + j) * n + k
            let (x, y, z) = (Double(i), Double(j), Double(k))
            let e = pow((x - c.0) / r.0, 2) + pow((y - c.1) / r.1, 2) + pow((z - c.2) / r.2, 2)
            var v = 0.45 + 0.05 * sin(0.15 * x + 0.1 * y)
            if e <= 1 {
                v = 0.62 + 0.03 * sin(f.0 * x) * cos(f.1 * y) * sin(f.2 * z); label[idx] = 1
                for t in ts where pow(x - t.0, 2) + pow(y - t.1, 2) + pow(z - t.2, 2) <= t.3 * t.3 { v -= t.4; label[idx] = 2; break }
            }
            ct[idx] = Float(min(1, max(0, v + u(-0.05, 0.05))))
        }}}
        return (ct, label)
    }
}
