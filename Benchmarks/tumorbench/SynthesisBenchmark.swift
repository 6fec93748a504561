import Foundation
import Imaging
import Kernels
import Synthesis

/// `tumorbench synthesis [case ...] [--runs N]`: the non-network parts of synthesis per 96³
/// patch: tumor geometry per size class, the diffusion blender, the procedural engine, the crop
/// rule, and the Gaussian filter against the Kernels module's `Tensor.gaussianFilter` (the
/// baseline measured in the same run). Each case: one discarded warm-up, then `runs` timed runs
/// (seed = run index, so the work varies like in the pipeline); median and min; peak RSS.
/// Cases: gauss geometry blend procedural crop.
enum SynthesisBenchmark {
    static func peakRSSMiB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }

    static func time(_ runs: Int, _ body: (Int) throws -> Double) rethrows -> (median: Double, min: Double, checksum: Double) {
        var check = try body(-1)
        var times: [Double] = []
        for r in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            check += try body(r)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        times.sort()
        return (times[times.count / 2], times[0], check)
    }

    static func ellipsoid(size: GridSize, center c: [Double], radii r: [Double]) -> MaskGrid {
        var m = MaskGrid(zeros: size)
        for x in 0..<size.x { for y in 0..<size.y { for z in 0..<size.z {
            let dx = (Double(x) - c[0]) / r[0], dy = (Double(y) - c[1]) / r[1], dz = (Double(z) - c[2]) / r[2]
            if dx * dx + dy * dy + dz * dz <= 1 { m[x, y, z] = 1 }
        } } }
        return m
    }

    static func line(_ name: String, _ t: (median: Double, min: Double, checksum: Double), baseline: Double? = nil, note: String = "") {
        let ratio = baseline.map { String(format: "%8.2f", $0 / t.median) } ?? "       -"
        let base = baseline.map { String(format: "%10.2f", $0) } ?? "         -"
        print(pad(name, 42) + base + String(format: " %10.2f %10.2f ", t.median, t.min) + ratio + "  " + note)
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

    static func main(_ args: [String]) throws {
        #if DEBUG
        print("!!! DEBUG build: numbers are meaningless; use `swift run -c release tumorbench synthesis` !!!")
        #endif
        var runs = 10
        var cases: [String] = []
        var i = 0
        while i < args.count {
            if args[i] == "--runs", i + 1 < args.count { runs = Int(args[i + 1]) ?? runs; i += 2; continue }
            cases.append(args[i]); i += 1
        }
        if cases.isEmpty { cases = ["gauss", "geometry", "blend", "procedural", "crop"] }
        print("tumorbench synthesis: \(ProcessInfo.processInfo.activeProcessorCount) cores, runs \(runs), single thread")
        print(pad("case", 42) + "   base_ms  median_ms     min_ms    ratio  note")

        let liver = ellipsoid(size: .patch, center: [48, 48, 48], radii: [40, 32, 26])
        var ctValues = [Float](repeating: 0.3, count: GridSize.patch.count)
        for j in 0..<ctValues.count where liver.voxels[j] != 0 { ctValues[j] = 0.5 }
        let ct = Tensor(shape: GridSize.patch.dims, data: ctValues)

        if cases.contains("gauss") {
            var noise = SynthRandom(seed: 1)
            let values = (0..<GridSize.patch.count).map { _ in noise.uniformFloat() }
            let tensor = Tensor(shape: GridSize.patch.dims, data: values)
            for sigma in [2.0, 4.0, 7.0] {
                let base = time(runs) { _ in Double(tensor.gaussianFilter(sigma: [sigma, sigma, sigma])[flat: 1000]) }
                let mine = time(runs) { _ in Double(GaussianBlur.filter(values, size: .patch, sigma: sigma)[1000]) }
                line("gaussian 96³ σ=\(Int(sigma)) (base: Kernels)", mine, baseline: base.median)
            }
        }
        if cases.contains("geometry") {
            let deform = time(runs) { r in
                var rng = SynthRandom(seed: UInt64(r + 50))
                return Double(TumorGeometry.deformedEllipsoid(radii: [16, 16, 16], sigma: 4, rng: &rng).nonzeroCount)
            }
            line("deform ellipsoid r=16 ×3 (σ=4)", deform, note: "python elasticdeform: scripts/synthesis_reference_timing.py")
            let reference: [TumorSizeClass: String] = [.medium: "reference: 35 ms (issue)"]
            for c in TumorSizeClass.allCases {
                let n = c == .large ? max(3, runs / 2) : runs
                let t = try time(n) { r in
                    var rng = SynthRandom(seed: UInt64(r + 100))
                    return Double(try TumorGeometry(organ: .liver).generate(organMask: liver, sizeClass: c, rng: &rng).mask.nonzeroCount)
                }
                line("geometry \(c) (liver)", t, note: (reference[c] ?? "") + (c == .large ? " runs \(n)" : ""))
            }
        }
        var plans: [TumorSizeClass: PlannedPatch] = [:]
        let synthesizer = PatchSynthesizer(organ: .liver)
        for c in [TumorSizeClass.small, .medium] {
            plans[c] = try synthesizer.plan(ct: ct, organMask: liver, healthy: true, seed: 5, forced: .some(c))
        }
        if cases.contains("blend") {
            let sample = Tensor(shape: GridSize.patch.dims, repeating: -0.2)
            for c in [TumorSizeClass.small, .medium] {
                let plan = plans[c]!
                let t = time(runs) { _ in
                    Double(Blender.blend(ct: plan.patch.ct, organ: plan.patch.label, tumor: plan.tumor!.mask,
                                         sample: sample, organType: .liver, sigma: 4).ct[flat: 0])
                }
                line("blend liver σ=4 (\(c) tumor)", t)
            }
            let t = time(runs) { _ in Double(Blender.replace(sample: sample)[flat: 0]) }
            line("blend pancreas (replace)", t)
        }
        if cases.contains("procedural") {
            for c in [TumorSizeClass.small, .medium] {
                let plan = plans[c]!
                let t = time(runs) { r in
                    var p = plan
                    p.seed = UInt64(r + 1)
                    return Double(synthesizer.paintProcedural(p).ct[flat: 0])
                }
                line("procedural paint (\(c) tumor)", t, note: "target ≤ 100 ms")
            }
            let t = try time(runs) { r in
                let p = try synthesizer.plan(ct: ct, organMask: liver, healthy: true, seed: UInt64(r + 7), forced: .some(nil))
                return Double(synthesizer.paintProcedural(p).ct[flat: 0])
            }
            line("procedural patch (crop+mask+paint, mix)", t, baseline: 600, note: "base: SyntheticTumors 0.6 s/case (issue)")
        }
        if cases.contains("crop") {
            let size = GridSize(300, 250, 250)
            let organ = ellipsoid(size: size, center: [170, 120, 160], radii: [80, 60, 55])
            var v = [Float](repeating: 0.3, count: size.count)
            for j in 0..<v.count where organ.voxels[j] != 0 { v[j] = 0.5 }
            let volume = Tensor(shape: size.dims, data: v)
            let t = try time(runs) { r in
                var rng = SynthRandom(seed: UInt64(r + 3))
                return Double(try OrganCropper(organ: .liver).crop(ct: volume, label: organ, healthy: true, rng: &rng).foregroundCount)
            }
            line("crop 300×250×250 (prepare + crop)", t)
            let source = try OrganCropper(organ: .liver).prepare(ct: volume, label: organ)
            let t2 = try time(runs) { r in
                var rng = SynthRandom(seed: UInt64(r + 3))
                return Double(try OrganCropper(organ: .liver).crop(source, healthy: true, rng: &rng).foregroundCount)
            }
            line("crop 300×250×250 (prepared volume)", t2)
        }
        print(String(format: "peak RSS %.0f MiB", peakRSSMiB()))
    }
}
