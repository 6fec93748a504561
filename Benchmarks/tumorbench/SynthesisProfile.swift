import Foundation
import Kernels

/// `tumorbench networks early-profile medium-profile [--runs N]`: the whole early (4 DDPM steps) and
/// medium (50 DDIM steps) synthesis split into phases, each phase being the same public call the
/// engine makes (condition preparation, encode, normalise + mask + concat, noise, every denoiser
/// step with its update, denormalise, snap, embed, decoder, layout permutation). Per phase: the
/// median wall time over the runs and the median process CPU time (both threads). After the phases,
/// the engine's own whole call in the same minutes: the difference to the sum of the phases is
/// what the engine adds beyond its parts.
enum SynthesisProfile {
    static func now() -> (wall: UInt64, cpu: Double) { (DispatchTime.now().uptimeNanoseconds, UnetProfile.cpuSeconds()) }

    final class Recorder {
        var names: [String] = []
        var wall: [String: [Double]] = [:], cpu: [String: [Double]] = [:]
        var last = SynthesisProfile.now()
        var active = true
        func start() { last = SynthesisProfile.now() }
        func mark(_ name: String) {
            let n = SynthesisProfile.now()
            if active {
                if wall[name] == nil { names.append(name) }
                wall[name, default: []].append(Double(n.wall - last.wall) / 1e6)
                cpu[name, default: []].append((n.cpu - last.cpu) * 1e3)
            }
            last = SynthesisProfile.now()
        }
        func report(_ label: String, whole: [Double]) {
            func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }
            print("\(label) (medians; load average \(NetworksBenchmark.loadAverage())): phase  wall_ms  cpu_ms")
            var sum = 0.0
            for n in names {
                let w = median(wall[n]!), c = median(cpu[n]!)
                if !n.hasPrefix("ref:") { sum += w }
                print("  " + n.padding(toLength: 36, withPad: " ", startingAt: 0) + String(format: " %9.1f %9.1f", w, c))
            }
            print(String(format: "  sum of phase medians (without the ref: lines) %.3f s; the engine's whole call: median %.3f s, min %.3f s (%d runs)",
                         sum / 1e3, median(whole), whole.min() ?? 0, whole.count))
            fflush(stdout)
        }
    }

    /// The engine's `condition(ct:mask:)`, phase by phase.
    static func condition(_ engine: DiffTumorEngine, ct: Tensor, mask: Tensor, _ rec: Recorder) -> Tensor {
        var masked = Tensor(uninitialized: ct.shape), m = Tensor(uninitialized: ct.shape)
        ct.withUnsafeBufferPointer { c in
            mask.withUnsafeBufferPointer { k in
                masked.withUnsafeMutableBufferPointer { o in
                    m.withUnsafeMutableBufferPointer { mo in
                        for i in 0..<c.count { o[i] = (c[i] * 2 - 1) * (1 - k[i]); mo[i] = k[i] * 2 - 1 }
                    }
                }
            }
        }
        rec.mark("mask ct (96³ pass)")
        let x = DiffTumorLayout.toNetwork(masked)
        rec.mark("toNetwork 96³")
        let z = engine.autoencoder.encode(x)
        rec.mark("encode")
        let latent = engine.normalize(z)
        rec.mark("normalize")
        let (lz, lx, ly) = (latent.shape[2], latent.shape[3], latent.shape[4])
        let cc = DiffTumorLayout.toNetwork(m.interpolateNearest(size: [lx, ly, lz]))
        let cond = Tensor.concat([latent, cc], axis: 1)
        rec.mark("mask resize + concat")
        return cond
    }

    /// The engine's `decode(latent:)`, phase by phase.
    static func decode(_ engine: DiffTumorEngine, _ x: Tensor, _ rec: Recorder) -> Tensor {
        let z = engine.denormalize(x)
        rec.mark("denormalize")
        let idx = engine.autoencoder.quantize(z)
        rec.mark("snap")
        let q = engine.autoencoder.embed(idx, shape: [z.shape[0]] + Array(z.shape.dropFirst(2)))
        rec.mark("embed")
        let y = engine.autoencoder.decode(q, quantize: false)
        rec.mark("decoder")
        let out = DiffTumorLayout.toPipeline(y)
        rec.mark("toPipeline 96³")
        return out
    }

    static func run(_ engine: DiffTumorEngine, ct: Tensor, mask: Tensor, early: Bool, medium: Bool, runs: Int) {
        if early, let model = engine.early {
            let rec = Recorder()
            var whole: [Double] = []
            for r in 0...runs {
                rec.active = r > 0
                rec.start()
                let cond = condition(engine, ct: ct, mask: mask, rec)
                var rng = GaussianNoise(seed: 1)
                let shape = [cond.shape[0], engine.autoencoder.architecture.embeddingDim] + Array(cond.shape.dropFirst(2))
                let xT = rng.tensor(shape)
                var noise: [Int: Tensor] = [:]
                for t in stride(from: model.schedule.timesteps - 1, through: 1, by: -1) { noise[t] = rng.tensor(shape) }
                rec.mark("noise")
                let x = model.sampleDDPM(xT: xT, cond: cond, noise: { noise[$0]! }, step: { t, _ in rec.mark("DDPM step t=\(t)") })
                let out = decode(engine, x, rec)
                _ = NetworksBenchmark.sum(out)
                rec.mark("checksum")
                // Reference points in the same minutes: the `unet` case (noearly model, x_T, t = 197) and the
                // early model on the same input, and the `decode` case's input (the encoder's latent).
                _ = engine.noearly?.denoiser(xT, cond: cond, timesteps: [197])
                rec.mark("ref: noearly UNet, x_T, t=197")
                _ = model.denoiser(xT, cond: cond, timesteps: [3])
                rec.mark("ref: early UNet, x_T, t=3")
                _ = engine.decode(latent: cond.slice(axis: 1, 0..<8))
                rec.mark("ref: decode of the condition latent")
                if r > 0 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let c = engine.condition(ct: ct, mask: mask)
                    _ = NetworksBenchmark.sum(engine.decode(latent: engine.sampleEarly(cond: c, seed: 1)))
                    whole.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                }
            }
            rec.report("early-profile (\(runs) runs after one warm-up)", whole: whole)
        }
        if medium, let model = engine.noearly {
            let rec = Recorder()
            var whole: [Double] = []
            for r in 0..<max(1, runs) {
                rec.start()
                let cond = condition(engine, ct: ct, mask: mask, rec)
                var rng = GaussianNoise(seed: 1)
                let shape = [cond.shape[0], engine.autoencoder.architecture.embeddingDim] + Array(cond.shape.dropFirst(2))
                let xT = rng.tensor(shape)
                rec.mark("noise")
                var stepTimes: [Double] = []
                var last = DispatchTime.now().uptimeNanoseconds
                let x = model.sampleDDIM(xT: xT, cond: cond, steps: 50, step: { _, _ in
                    let n = DispatchTime.now().uptimeNanoseconds
                    stepTimes.append(Double(n - last) / 1e6)
                    last = n
                })
                rec.mark("50 DDIM steps")
                let s = stepTimes.sorted()
                print(String(format: "medium run %d: DDIM step ms: first %.1f, min %.1f, median %.1f, max %.1f, sum %.1f",
                             r, stepTimes[0], s[0], s[s.count / 2], s[s.count - 1], stepTimes.reduce(0, +)))
                let out = decode(engine, x, rec)
                _ = NetworksBenchmark.sum(out)
                rec.mark("checksum")
                if r + 1 == max(1, runs) {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let c = engine.condition(ct: ct, mask: mask)
                    _ = NetworksBenchmark.sum(engine.decode(latent: engine.sampleDDIM(cond: c, seed: 1, steps: 50)))
                    whole.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                }
            }
            rec.report("medium-profile (\(max(1, runs)) runs, no warm-up beyond early-profile)", whole: whole)
        }
    }
}
