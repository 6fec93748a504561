import COpenBLAS
import Foundation
import Kernels
import Stages

/// `tumorbench networks [case ...] [--runs N] [--fixtures DIR]`: DiffTumor networks at the real size
/// (96³ patch, 8×24³ latent), with efficiency = counted FLOPs (difftumor.md §6) / (time × sgemm GFLOP/s
/// measured in the same run), and peak RSS. Cases: sgemm encode unet snap decode early medium; extra:
/// early-x2, medium-x2 (two concurrent single-threaded syntheses: throughput), unet-profile,
/// unet-ab, early-ab, medium-ab (--ab KNOB=V1,V2: interleaved A/B of one step or a whole synthesis, UnetAB.swift), resnet-phases (ResnetPhases.swift), decode-profile, encode-profile,
/// early-profile, medium-profile, snap-variants. Options: --kernel-threads N, --blas-threads N,
/// --mmap (glibc's default mapping of large blocks instead of heap reuse).
enum NetworksBenchmark {
    struct Case {
        let name: String
        let gflop: Double
        let defaultRuns: Int
        /// The whole-synthesis cases run the same code as the cases before them, which warmed it up.
        var warmup = true
        let run: () -> Float
    }

    static func peakRSSMiB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }

    static func time(_ runs: Int, warmup: Bool = true, _ body: () -> Float) -> (median: Double, min: Double, checksum: Float) {
        var check: Float = warmup ? body() : 0 // warm-up, discarded
        var times: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            check += body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        times.sort()
        return (times[times.count / 2], times[0], check)
    }

    /// Raw `cblas_sgemm` GFLOP/s on a 1024³ product: the baseline the efficiencies divide by.
    static func sgemmGFLOPs(runs: Int) -> Double {
        // The baseline always uses every core through OpenBLAS's own threads.
        let saved = BLASThreads.count
        BLASThreads.count = ProcessInfo.processInfo.activeProcessorCount
        defer { BLASThreads.count = saved }
        let n = 1024
        let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        let (median, _, _) = time(runs) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
            return c[0]
        }
        return 2 * Double(n * n * n) / median / 1e9
    }

    static func sum(_ t: Tensor) -> Float { t.withUnsafeBufferPointer { $0.reduce(0, +) } }

    /// Runs `body` twice at once (seeds 1 and 2) on two threads with the kernels single-threaded
    /// (`KernelContext.threads = 1`, so OpenBLAS too), then restores the thread budget.
    static func concurrentPair(_ body: @escaping @Sendable (UInt64) -> Float) -> Float {
        let saved = (KernelContext.threads, BLASThreads.count)
        KernelContext.threads = 1
        defer { KernelContext.threads = saved.0; BLASThreads.count = saved.1 }
        let results = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { i in results[i] = body(UInt64(i + 1)) }
        return results[0] + results[1]
    }

    static func main(_ args: [String]) throws {
        #if DEBUG
        print("!!! DEBUG build: numbers are meaningless; use `swift run -c release tumorbench networks` !!!")
        #endif
        // Debian's OpenBLAS may not recognise this CPU and fall back to SSE3 kernels (see BLASCoreType).
        BLASCoreType.reexecIfUnrecognised()
        var selected: [String] = []
        var runsOverride: Int? = nil
        var dir = "../shared/fixtures/difftumor"
        // Default: OpenBLAS threads on every core. `--blas-threads 1` runs OpenBLAS single-threaded and
        // splits the GEMMs across the op workers instead (NetworkOps.workerGEMM).
        var blasThreads = ProcessInfo.processInfo.activeProcessorCount
        var kernelThreads: Int? = nil
        // Default: the daemon's allocator setting (Stages.MallocTuning: freed 113 MB activations stay in the
        // heap for the next call); `--mmap` keeps glibc's default (every large block freshly mapped and page-faulted).
        var heapReuse = true
        var abSpec = "plane=0,40", abGiven = false
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--runs": runsOverride = Int(args[i + 1]); i += 1
            case "--fixtures": dir = args[i + 1]; i += 1
            case "--blas-threads": blasThreads = Int(args[i + 1]) ?? 1; i += 1
            case "--kernel-threads": kernelThreads = Int(args[i + 1]) ?? 1; i += 1
            case "--mmap": heapReuse = false
            case "--ab": abSpec = args[i + 1]; abGiven = true; i += 1
            default: selected.append(args[i])
            }
            i += 1
        }
        if selected.isEmpty { selected = ["sgemm", "encode", "unet", "snap", "decode", "early", "medium"] }

        if heapReuse { heapReuse = MallocTuning.apply() }
        KernelContext.threads = ProcessInfo.processInfo.activeProcessorCount
        if let kt = kernelThreads { KernelContext.threads = kt }
        BLASThreads.count = blasThreads
        let engine = try DiffTumorEngine(autoencoderPath: dir + "/autoencoder.ckpt", earlyPath: dir + "/diffusion_early.pt",
                                         noearlyPath: dir + "/diffusion_noearly.pt")
        var rng = GaussianNoise(seed: 7)
        var ct = rng.tensor([1, 1, 96, 96, 96])
        ct.withUnsafeMutableBufferPointer { p in for j in 0..<p.count { p[j] = min(max(0.5 + 0.1 * p[j], 0), 1) } }
        var mask = Tensor(zeros: [1, 1, 96, 96, 96])
        mask.withUnsafeMutableBufferPointer { p in
            for x in 40..<56 { for y in 40..<56 { for z in 40..<56 { p[(x * 96 + y) * 96 + z] = 1 } } }
        }
        let latentShape = [1, 8, 24, 24, 24]
        let xT = rng.tensor(latentShape)
        let cond = engine.condition(ct: ct, mask: mask)
        let z = engine.autoencoder.encode(DiffTumorLayout.toNetwork(ct))

        let cases: [Case] = [
            Case(name: "encode", gflop: 30.0, defaultRuns: 10) { sum(engine.autoencoder.encode(DiffTumorLayout.toNetwork(ct))) },
            Case(name: "unet", gflop: 13.43, defaultRuns: 10) { sum(engine.noearly!.denoiser(xT, cond: cond, timesteps: [197])) },
            Case(name: "snap", gflop: 3.62, defaultRuns: 10) { Float(engine.autoencoder.quantize(z).reduce(0) { $0 &+ Int($1) }) },
            Case(name: "decode", gflop: 331 + 3.62, defaultRuns: 2) { sum(engine.decode(latent: engine.normalize(z))) },
            Case(name: "early", gflop: 424, defaultRuns: 2, warmup: false) {
                let c = engine.condition(ct: ct, mask: mask)
                return sum(engine.decode(latent: engine.sampleEarly(cond: c, seed: 1)))
            },
            Case(name: "medium", gflop: 1042, defaultRuns: 1, warmup: false) {
                let c = engine.condition(ct: ct, mask: mask)
                return sum(engine.decode(latent: engine.sampleDDIM(cond: c, seed: 1, steps: 50)))
            },
            // Throughput: two syntheses at once, each on one thread (the daemon's sampler stage with
            // 2 replicas × 1 thread), counted as 2 × the FLOPs of one.
            Case(name: "early-x2", gflop: 2 * 424, defaultRuns: 1, warmup: false) {
                concurrentPair { seed in
                    let c = engine.condition(ct: ct, mask: mask)
                    return sum(engine.decode(latent: engine.sampleEarly(cond: c, seed: seed)))
                }
            },
            Case(name: "medium-x2", gflop: 2 * 1042, defaultRuns: 1, warmup: false) {
                concurrentPair { seed in
                    let c = engine.condition(ct: ct, mask: mask)
                    return sum(engine.decode(latent: engine.sampleDDIM(cond: c, seed: seed, steps: 50)))
                }
            },
        ]

        if selected.contains("decode-profile") || selected.contains("encode-profile") {
            profileAutoencoder(engine, ct: ct, z: z, decode: selected.contains("decode-profile"),
                               encode: selected.contains("encode-profile"), runs: runsOverride ?? 3)
        }
        if selected.contains("snap-variants") {
            VQGAN3D.snapFused = false
            let reference = engine.autoencoder.quantize(z)
            /// Median and best wall seconds, CPU seconds per call, and whether every call gave the reference indices.
            func timeSnap() -> (median: Double, best: Double, cpu: Double, same: Bool) {
                var same = true
                let cpu0 = UnetProfile.cpuSeconds()
                let (median, best, _) = time(runsOverride ?? 10) {
                    let idx = engine.autoencoder.quantize(z)
                    same = same && idx == reference
                    return Float(idx.reduce(0) { $0 &+ Int($1) })
                }
                return (median, best, (UnetProfile.cpuSeconds() - cpu0) / Double((runsOverride ?? 10) + 1), same)
            }
            if KernelContext.useAVX512 {
                VQGAN3D.snapFused = true
                for (tile, chunk) in [(64, 512), (128, 512), (256, 512), (128, 1024), (256, 2048)] {
                    VQGAN3D.snapChunkCodes = chunk
                    VQGAN3D.snapFusedTileCodes = tile
                    let (median, best, cpu, same) = timeSnap()
                    print(String(format: "snap fused AVX-512, tile %3d codes, L1 chunk %5d codes: median %.1f ms, min %.1f ms, CPU %.1f ms per call%@",
                                 tile, chunk, median * 1e3, best * 1e3, cpu * 1e3, same ? "" : "  (indices differ from the GEMM path!)"))
                }
                VQGAN3D.snapChunkCodes = 512
                VQGAN3D.snapFusedTileCodes = 128
                VQGAN3D.snapFused = false
            }
            for workers in [true, false] {
                for (rows, codes) in [(1024, 256), (512, 256), (512, 512), (2048, 256), (4096, 128)] {
                    VQGAN3D.snapWorkerGEMM = workers
                    VQGAN3D.snapTileRows = rows
                    VQGAN3D.snapTileCodes = codes
                    let (median, best, cpu, same) = timeSnap()
                    print(String(format: "snap %@ tile %4d rows × %5d codes: median %.1f ms, min %.1f ms, CPU %.1f ms per call%@",
                                 workers ? "worker GEMMs   " : "one-thread GEMM", rows, codes, median * 1e3, best * 1e3, cpu * 1e3,
                                 same ? "" : "  (indices differ!)"))
                }
            }
            VQGAN3D.snapFused = true
            VQGAN3D.snapWorkerGEMM = true
            VQGAN3D.snapTileRows = 1024
            VQGAN3D.snapTileCodes = 256
        }
        if selected.contains("early-profile") || selected.contains("medium-profile") {
            SynthesisProfile.run(engine, ct: ct, mask: mask, early: selected.contains("early-profile"),
                                 medium: selected.contains("medium-profile"), runs: runsOverride ?? 3)
        }
        if selected.contains("unet-ab") {
            try UnetAB.run(engine.noearly!.denoiser, x: xT, cond: cond, spec: abSpec, rounds: runsOverride ?? 15)
        }
        for (command, gflop, steps) in [("early-ab", 424.0, 0), ("medium-ab", 1042.0, 50)] where selected.contains(command) {
            try UnetAB.runSynthesis(command, spec: abSpec, rounds: runsOverride ?? 5, gflop: gflop) {
                let c = engine.condition(ct: ct, mask: mask)
                let latent = steps == 0 ? engine.sampleEarly(cond: c, seed: 1) : engine.sampleDDIM(cond: c, seed: 1, steps: steps)
                return sum(engine.decode(latent: latent))
            }
        }
        if selected.contains("resnet-phases") {
            try ResnetPhases.run(engine.noearly!.denoiser, x: xT, cond: cond, runs: runsOverride ?? 10, spec: abGiven ? abSpec : nil)
        }
        if selected.contains("unet-profile") {
            UnetProfile.run(engine.noearly!.denoiser, x: xT, cond: cond, runs: runsOverride ?? 5)
        }
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, OpenBLAS core \(BLASCoreType.current), threads \(BLASThreads.count), op threads \(KernelContext.threads), AVX-512 convs \(KernelContext.useAVX512), heap reuse \(heapReuse); load average \(loadAverage())")
        let gemm = sgemmGFLOPs(runs: 10)
        print(String(format: "sgemm 1024^3 baseline: %.1f GFLOP/s", gemm))
        fflush(stdout)
        // The machine is shared: the sgemm baseline is re-measured right before and after every case,
        // and `efficiency` divides the median time's rate by the mean of those two. The VM's speed also
        // drifts within a case, so sgemm is measured again between runs as well: `run_eff` is the median
        // over runs of each run's rate divided by the mean of the sgemm measured just before and after it.
        print("case      GFLOP  runs   median_s   min_s   GFLOP/s  sgemm_GFLOP/s  efficiency  run_eff  peak_rss_MiB")
        for c in cases where selected.contains(c.name) {
            let runs = runsOverride ?? c.defaultRuns
            var check: Float = c.warmup ? c.run() : 0   // warm-up, discarded
            let before = sgemmGFLOPs(runs: 5)
            var previous = before
            var times: [Double] = [], runEfficiencies: [Double] = []
            for _ in 0..<runs {
                let t0 = DispatchTime.now().uptimeNanoseconds
                check += c.run()
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                let next = sgemmGFLOPs(runs: 5)
                times.append(seconds)
                runEfficiencies.append(c.gflop / seconds / ((previous + next) / 2))
                previous = next
            }
            times.sort(); runEfficiencies.sort()
            let (median, best) = (times[times.count / 2], times[0])
            let base = (before + previous) / 2
            let rate = c.gflop / median
            print(String(format: "%-8@ %7.2f  %4d  %9.3f  %7.3f  %8.1f  %13.1f  %9.0f%%  %6.0f%%  %10.0f   (checksum %g)",
                         c.name as NSString, c.gflop, runs, median, best, rate, base, 100 * rate / base,
                         100 * runEfficiencies[runEfficiencies.count / 2], peakRSSMiB(), Double(check)))
            fflush(stdout)
        }
        let after = sgemmGFLOPs(runs: 5)
        print(String(format: "sgemm 1024^3 after: %.1f GFLOP/s (the machine is shared: compare the two)", after))
    }

    /// Milliseconds per op of the autoencoder, from the time between successive taps, summed by op
    /// kind (`taps` see every op: convs, norms, adds, transposed convs, the snap). Median over `runs`.
    static func profileAutoencoder(_ engine: DiffTumorEngine, ct: Tensor, z: Tensor, decode: Bool, encode: Bool, runs: Int) {
        func kind(_ name: String) -> String {
            let op = name.split(separator: ".").last.map(String.init) ?? name
            switch op {
            case "conv1", "conv2": return "conv 3³ (ResBlock)"
            case "norm1", "norm2", "final_block": return "GroupNorm+SiLU"
            case "add": return "residual add (+stats)"
            case "up": return "transposed conv (pad+convT)"
            case "down": return "conv 4³ stride 2"
            case "conv_first": return "conv_first 1→16"
            case "conv_last": return "conv_last 32→1"
            case "post_vq_conv", "pre_vq_conv": return "1×1 conv"
            case "quantize": return "codebook snap + embed"
            default: return "other (" + op + ")"
            }
        }
        func profile(_ label: String, _ body: (@escaping VQGAN3D.Taps) -> Void) {
            var perOp: [String: [Double]] = [:], perKind: [String: [Double]] = [:]
            var order: [String] = [], kindOrder: [String] = []
            var totals: [Double] = []
            for _ in 0..<(runs + 1) {
                var opTimes: [String: Double] = [:], kindTimes: [String: Double] = [:]
                let start = DispatchTime.now().uptimeNanoseconds
                var last = start
                body { name, _ in
                    let now = DispatchTime.now().uptimeNanoseconds
                    let ms = Double(now - last) / 1e6
                    last = now
                    // Block-level taps (`block0.res1`) follow their last op (`block0.res1.add`) directly.
                    if ["res", "res1", "res2"].contains(name.split(separator: ".").last.map(String.init) ?? "") { return }
                    if !order.contains(name) { order.append(name) }
                    opTimes[name, default: 0] += ms
                    let k = kind(name)
                    if !kindOrder.contains(k) { kindOrder.append(k) }
                    kindTimes[k, default: 0] += ms
                }
                totals.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                for (k, v) in opTimes { perOp[k, default: []].append(v) }
                for (k, v) in kindTimes { perKind[k, default: []].append(v) }
            }
            func median(_ v: [Double]) -> Double { let s = Array(v.dropFirst()).sorted(); return s.isEmpty ? 0 : s[s.count / 2] }
            let total = median(totals)
            print("\(label) profile (median of \(runs) runs after 1 warm-up; total \(String(format: "%.0f", total)) ms):")
            for name in order { print(String(format: "  %-26@ %8.1f ms", name as NSString, median(perOp[name] ?? []))) }
            print("  by kind:")
            for k in kindOrder {
                let m = median(perKind[k] ?? [])
                print(String(format: "  %-30@ %8.1f ms  %5.1f%%", k as NSString, m, 100 * m / total))
            }
            fflush(stdout)
        }
        if encode {
            let x = DiffTumorLayout.toNetwork(ct)
            profile("encode") { taps in _ = engine.autoencoder.encode(x, taps: taps) }
        }
        if decode {
            let latent = engine.denormalize(engine.normalize(z))
            profile("decode") { taps in _ = engine.autoencoder.decode(latent, quantize: true, taps: taps) }
        }
    }

    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    }
}
