import COpenBLAS
import Foundation
import Kernels

/// `tumorbench networks [case ...] [--runs N] [--fixtures DIR]`: DiffTumor networks at the real size
/// (96³ patch, 8×24³ latent), with efficiency = counted FLOPs (difftumor.md §6) / (time × sgemm GFLOP/s
/// measured in the same run), and peak RSS. Cases: sgemm encode unet snap decode early medium.
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
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--runs": runsOverride = Int(args[i + 1]); i += 1
            case "--fixtures": dir = args[i + 1]; i += 1
            case "--blas-threads": blasThreads = Int(args[i + 1]) ?? 1; i += 1
            default: selected.append(args[i])
            }
            i += 1
        }
        if selected.isEmpty { selected = ["sgemm", "encode", "unet", "snap", "decode", "early", "medium"] }

        NetworkOps.threads = ProcessInfo.processInfo.activeProcessorCount
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
        ]

        if selected.contains("unet-profile") {
            UnetProfile.run(engine.noearly!.denoiser, x: xT, cond: cond, runs: runsOverride ?? 5)
        }
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, OpenBLAS core \(BLASCoreType.current), threads \(BLASThreads.count), op threads \(NetworkOps.threads); load average \(loadAverage())")
        let gemm = sgemmGFLOPs(runs: 10)
        print(String(format: "sgemm 1024^3 baseline: %.1f GFLOP/s", gemm))
        fflush(stdout)
        // The machine is shared: the sgemm baseline is re-measured right before and after every case,
        // and each case's efficiency divides by the mean of those two.
        print("case      GFLOP  runs   median_s   min_s   GFLOP/s  sgemm_GFLOP/s  efficiency  peak_rss_MiB")
        for c in cases where selected.contains(c.name) {
            let runs = runsOverride ?? c.defaultRuns
            let before = sgemmGFLOPs(runs: 5)
            let (median, best, check) = time(runs, warmup: c.warmup, c.run)
            let base = (before + sgemmGFLOPs(runs: 5)) / 2
            let rate = c.gflop / median
            print(String(format: "%-8@ %7.2f  %4d  %9.3f  %7.3f  %8.1f  %13.1f  %9.0f%%  %10.0f   (checksum %g)",
                         c.name as NSString, c.gflop, runs, median, best, rate, base, 100 * rate / base, peakRSSMiB(), Double(check)))
            fflush(stdout)
        }
        let after = sgemmGFLOPs(runs: 5)
        print(String(format: "sgemm 1024^3 after: %.1f GFLOP/s (the machine is shared: compare the two)", after))
    }

    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    }
}
