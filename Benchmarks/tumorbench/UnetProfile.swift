import Foundation
import Kernels

/// `tumorbench networks unet-profile [--runs N]`: per-block times of one Unet3D step at the real size
/// (8×24³ latent, t = 197, the condition's init-conv share prepared outside the timed steps), from the forward pass's taps. Per block: the minimum wall time over the
/// runs (the machine is shared: the minimum is the least disturbed) and the median process CPU time
/// (both threads; counts OpenBLAS threads spinning too). One warm-up run first.
enum UnetProfile {
    static func cpuSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func run(_ unet: Unet3D, x: Tensor, cond: Tensor, runs: Int) {
        var names: [String] = []
        var wall: [String: [Double]] = [:], cpu: [String: [Double]] = [:]
        var totals: [(Double, Double)] = []
        // The condition prepared once, as the samplers do per run (`Unet3D.reuseConditionShare`).
        let prepared = unet.prepare(cond: cond)
        for r in 0...max(1, runs) {
            var last = (DispatchTime.now().uptimeNanoseconds, cpuSeconds())
            let start = last
            _ = unet(x, prepared: prepared, timesteps: [197], taps: { name, _ in
                let now = (DispatchTime.now().uptimeNanoseconds, cpuSeconds())
                if r > 0 {
                    if wall[name] == nil { names.append(name) }
                    wall[name, default: []].append(Double(now.0 - last.0) / 1e6)
                    cpu[name, default: []].append((now.1 - last.1) * 1e3)
                }
                last = (DispatchTime.now().uptimeNanoseconds, cpuSeconds())
            })
            if r > 0 { totals.append((Double(DispatchTime.now().uptimeNanoseconds - start.0) / 1e9, cpuSeconds() - start.1)) }
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        print("unet-profile (\(runs) runs after one warm-up; load average \(NetworksBenchmark.loadAverage())): block  min_wall_ms  median_cpu_ms")
        var sumMin = 0.0, sumCPU = 0.0
        for n in names {
            let w = wall[n]!.min()!, c = median(cpu[n]!)
            sumMin += w; sumCPU += c
            print(String(format: "  %-20@ %8.1f  %8.1f", n as NSString, w, c))
        }
        print(String(format: "  sum of block minima %.1f ms, of median CPU %.1f ms; whole step: min wall %.3f s, median CPU %.3f s",
                     sumMin, sumCPU, totals.map { $0.0 }.min()!, median(totals.map { $0.1 })))
    }
}
