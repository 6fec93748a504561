import Foundation
import Kernels

/// `tumorbench networks resnet-phases [--runs N]`: the ops inside every ResnetBlock of one Unet3D step at
/// the real size (8×24³ latent, t = 197), timed one by one through `Unet3D.phaseTap`: time-MLP projection,
/// conv1, GroupNorm+scale/shift+SiLU, conv2, res_conv, GroupNorm+SiLU+residual (and the skip concat).
/// Per block and op: the median wall µs over the runs (one warm-up first), then the block's sum and
/// its non-convolution share. With `--ab KNOB=V1,V2,…` (a knob of `UnetAB`), the settings take turns run
/// by run and each gets its own table.
enum ResnetPhases {
    static func run(_ unet: Unet3D, x: Tensor, cond: Tensor, runs: Int, spec: String?) throws {
        var settings: [(String, Int, (Int) -> Void)] = [("default", 0, { _ in })]
        if let spec {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let set = UnetAB.knobs[parts[0]] else {
                throw UnetAB.ValidationError("resnet-phases: --ab must be KNOB=V1,V2,… with KNOB one of \(UnetAB.knobs.keys.sorted())")
            }
            settings = parts[1].split(separator: ",").compactMap { Int($0) }.map { (parts[0], $0, set) }
        }
        var blocks: [String] = []
        var phaseOrder: [String] = []
        var perSetting = [[String: [String: [Double]]]](repeating: [:], count: settings.count)
        var times: [String: [String: [Double]]] = [:]
        var pending: [(String, Double)] = []
        var last = DispatchTime.now().uptimeNanoseconds
        var round = 0
        Unet3D.phaseTap = { name in
            let now = DispatchTime.now().uptimeNanoseconds
            pending.append((name, Double(now - last) / 1e3))
            if !phaseOrder.contains(name) { phaseOrder.append(name) }
            last = DispatchTime.now().uptimeNanoseconds
        }
        defer { Unet3D.phaseTap = nil }
        for r in 0...max(1, runs) {
            round = r
            for (k, setting) in settings.enumerated() {
                setting.2(setting.1)
                last = DispatchTime.now().uptimeNanoseconds
                pending = []
                _ = unet(x, cond: cond, timesteps: [197], taps: { name, _ in
                    if !pending.isEmpty && round > 0 {
                        if !blocks.contains(name) { blocks.append(name) }
                        for (p, us) in pending { perSetting[k][name, default: [:]][p, default: []].append(us) }
                    }
                    pending = []
                    last = DispatchTime.now().uptimeNanoseconds
                })
            }
        }
        sampler(unet, x: x, cond: cond, runs: runs)
        for (k, setting) in settings.enumerated() {
            times = perSetting[k]
            let label = spec == nil ? "" : " \(setting.0)=\(setting.1)"
            table(label: label, runs: runs, blocks: blocks, phaseOrder: phaseOrder, times: times)
        }
    }

    /// The DDIM sampler's work around one Unet call (`GaussianDiffusion.sampleDDIM`): the update arithmetic,
    /// and inside the Unet call the condition concatenation of the init conv and the time embedding.
    static func sampler(_ unet: Unet3D, x: Tensor, cond: Tensor, runs: Int) {
        func medianMicros(_ body: () -> Void) -> Double {
            body()
            var v: [Double] = []
            for _ in 0..<max(5, runs * 3) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                body()
                v.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3)
            }
            return v.sorted()[v.count / 2]
        }
        var xs = x
        let eps = cond.count >= x.count ? Tensor(shape: x.shape, data: Array(cond.scalars[0..<x.count])) : x
        let update = medianMicros { GaussianDiffusion.ddimUpdate(&xs, eps: eps, alpha: 0.5, alphaPrev: 0.6) }
        let concat = medianMicros { _ = Tensor.concat([x, cond], axis: 1) }
        let embed = medianMicros { _ = unet.timeEmbedding([197]) }
        print(String(format: "sampler around one Unet call (median µs): DDIM update %.0f, condition concat %.0f, time embedding %.0f",
                     update, concat, embed))
    }

    static func table(label: String, runs: Int, blocks: [String], phaseOrder: [String], times: [String: [String: [Double]]]) {
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        print("resnet-phases\(label) (\(runs) runs after one warm-up; load average \(NetworksBenchmark.loadAverage())): median wall µs per op")
        print("  " + "block".padding(toLength: 14, withPad: " ", startingAt: 0)
              + phaseOrder.map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined() + "   sum   non-conv")
        var totalSum = 0.0, totalNonConv = 0.0
        var perPhase: [String: Double] = [:]
        for b in blocks {
            var line = "  " + b.padding(toLength: 14, withPad: " ", startingAt: 0)
            var sum = 0.0, nonConv = 0.0
            for p in phaseOrder {
                if let v = times[b]?[p] {
                    let m = median(v)
                    sum += m
                    if !p.hasPrefix("conv") { nonConv += m }
                    perPhase[p, default: 0] += m
                    line += String(format: "%-10.0f", m)
                } else {
                    line += "-".padding(toLength: 10, withPad: " ", startingAt: 0)
                }
            }
            totalSum += sum; totalNonConv += nonConv
            print(line + String(format: "%6.0f  %6.0f", sum, nonConv))
        }
        print(String(format: "  all blocks: %.2f ms, of which outside conv1/conv2 %.2f ms; per op: ", totalSum / 1e3, totalNonConv / 1e3)
              + phaseOrder.map { String(format: "%@ %.2f", $0 as NSString, (perPhase[$0] ?? 0) / 1e3) }.joined(separator: ", "))
    }
}
