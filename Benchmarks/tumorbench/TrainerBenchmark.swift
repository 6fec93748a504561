import Foundation
import Kernels
import Stages

/// One training step (forward + backward + AdamW update) of the reference U-Net at batch 1,
/// 96³, against raw sgemm throughput measured in the same run.
/// Usage: tumorbench trainer [--size 96] [--runs 10] [--threads 2] [--batch 1] [--transposed-dx] [--gemm-dw] [--layers] [--ab]
/// (`--transposed-dx`: stride-1 input gradients through `Tensor.convTranspose3d` instead of the
/// flipped kernel's `Tensor.conv3d`; `--gemm-dw`: weight gradients through im2col + sgemm instead of
/// the direct AVX-512 kernel; `--layers`: print the per-layer profile of one step; `--ab`: the direct and the im2col+sgemm weight
/// gradients step by step in paired rounds, medians and per-product seconds; `--no-malloc-tuning`: keep glibc's
/// default allocator settings instead of `tumord`'s `MallocTuning.apply()`.)
enum TrainerBenchmark {
    static func run(_ args: [String]) {
        func opt(_ name: String, _ d: Int) -> Int {
            if let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) { return v }
            return d
        }
        let size = opt("--size", 96), runs = opt("--runs", 10), threads = opt("--threads", 2), batch = opt("--batch", 1)
        BLASCoreType.reexecIfUnrecognised()
        KernelContext.threads = threads
        // The allocator settings `tumord` runs the trainer stage with: freed activations stay in the
        // heap for the next step instead of being unmapped and page-faulted in again.
        let mallocTuned = !args.contains("--no-malloc-tuning")
        if mallocTuned { MallocTuning.apply() }
        ConvGeometry.useKernelsTransposedGradient = args.contains("--transposed-dx")
        ConvGeometry.useDirectWeightGradient = !args.contains("--gemm-dw")
        ConvGeometry.directWeightGradientMinPositions = opt("--dw-min", ConvGeometry.directWeightGradientMinPositions)
        ConvGeometry.directWeightGradientChunk = opt("--dw-chunk", ConvGeometry.directWeightGradientChunk)
        let host = ProcessInfo.processInfo.hostName
        print("machine: \(host), \(ProcessInfo.processInfo.activeProcessorCount) cores, threads \(threads), malloc \(mallocTuned ? "tuned as tumord" : "glibc default")")
        print("OpenBLAS core: \(BLASCoreType.current), OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "(unset)")")
        if BLASCoreType.current == "Prescott" {
            print("!!! OpenBLAS runs its SSE3 (Prescott) kernels: rerun with OPENBLAS_CORETYPE=SkylakeX for AVX-512 !!!")
        }
        let peak = SGEMMProbe.gflops(m: 1024, n: 1024, k: 1024, repeats: 10)
        let shaped = SGEMMProbe.gflops(m: 32, n: 13824, k: 864, repeats: 20)
        print(String(format: "sgemm 1024³: %.1f GFLOP/s   sgemm 32×13824×864 (UNet-shaped): %.1f GFLOP/s", peak, shaped))

        let trainer = SegmentationTrainer(config: TrainerConfig())
        var rng = SplitMix64(seed: 1)
        let n = size * size * size
        let batchSamples = (0..<batch).map { _ in
            TrainingSample(ct: Tensor(shape: [1, size, size, size], data: (0..<n).map { _ in Float(rng.nextUnit()) }),
                           label: (0..<n).map { _ in UInt8(rng.next() % 3) })
        }
        let flopsFwd = trainer.model.forwardFLOPs(inputSize: [size, size, size]) * Double(batch)
        let flopsStep = 3 * flopsFwd  // forward + input and weight gradients (first conv's input gradient skipped)
        // Forward only (inference path).
        let x = Tensor(shape: [batch, 1, size, size, size], data: batchSamples.flatMap { $0.ct.scalars })
        _ = trainer.model.predict(x)
        var fwd: [Double] = []
        for _ in 0..<max(1, runs / 2) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = trainer.model.predict(x)
            fwd.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            precondition(y.count > 0)
        }
        if args.contains("--ab") {
            // Paired comparison under the same load: one step of each variant per round.
            let variants: [(String, () -> Void)] = [
                ("default", { ConvGeometry.useDirectWeightGradient = true }),
                ("gemm-dW", { ConvGeometry.useDirectWeightGradient = false }),
            ]
            var t: [String: [Double]] = [:]
            var layer: [String: [String: Double]] = [:]
            for round in 0...runs {
                for (name, set) in variants {
                    set()
                    Tape.profiling = true
                    Tape.layerProfile = [:]
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    _ = trainer.step(batch: batchSamples)
                    Tape.profiling = false
                    if round > 0 {  // round 0 warms up
                        t[name, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                        for (k, v) in Tape.layerProfile { layer[name, default: [:]][k, default: 0] += v / Double(runs) }
                    }
                }
            }
            let base = t["default"]!.sorted()[runs / 2]
            for (name, _) in variants {
                let med = t[name]!.sorted()[runs / 2]
                let l = layer[name] ?? [:]
                func sum(_ prefix: String) -> Double { l.filter { $0.key.hasPrefix(prefix) }.reduce(0) { $0 + $1.value } }
                print(String(format: "%-16@ step median %.3f s (%d paired runs, %.2f× default)  fwd conv %.3f  fwd convT %.3f  dX conv %.3f  dX convT %.3f  dW conv %.3f  dW convT %.3f",
                             name, med, runs, med / base, sum("fwd conv "), sum("fwd convT"), sum("dX conv "), sum("dX convT"),
                             sum("dW conv "), sum("dW convT")))
            }
            if args.contains("--layers") {
                let names = variants.map(\.0)
                print("per layer (mean s per step): " + names.joined(separator: " | "))
                for (k, v) in (layer["default"] ?? [:]).sorted(by: { $0.value > $1.value }) where v > 0.01 {
                    print("  " + names.map { String(format: "%.3f", layer[$0]?[k] ?? .nan) }.joined(separator: " | ") + "  \(k)")
                }
            }
            print(String(format: "sgemm 1024³ after: %.1f GFLOP/s", SGEMMProbe.gflops(m: 1024, n: 1024, k: 1024, repeats: 10)))
            return
        }
        _ = trainer.step(batch: batchSamples)  // warm-up, discarded
        var times: [Double] = []
        var checksum: Float = 0
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            checksum += trainer.step(batch: batchSamples)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        Tape.profiling = true
        Tape.profile = [:]
        Tape.layerProfile = [:]
        _ = trainer.step(batch: batchSamples)
        Tape.profiling = false
        let prof = Tape.profile.sorted { $0.value > $1.value }
        print("one profiled step: " + prof.map { String(format: "%@ %.3f s", $0.key, $0.value) }.joined(separator: ", "))
        if args.contains("--layers") {
            for (k, v) in Tape.layerProfile.sorted(by: { $0.value > $1.value }) { print(String(format: "  %.3f s  %@", v, k)) }
        }
        let med = times.sorted()[times.count / 2], fmed = fwd.sorted()[fwd.count / 2]
        print(String(format: "unet forward  batch %d %d³: median %.3f s (%d runs)  %.2f GFLOP  %.1f GFLOP/s  %.0f%% of sgemm 1024³",
                     batch, size, fmed, fwd.count, flopsFwd / 1e9, flopsFwd / fmed / 1e9, 100 * flopsFwd / fmed / 1e9 / peak))
        print(String(format: "train step    batch %d %d³: median %.3f s, min %.3f s (%d runs)  ~%.1f GFLOP  %.1f GFLOP/s  %.0f%% of sgemm 1024³",
                     batch, size, med, times.min()!, runs, flopsStep / 1e9, flopsStep / med / 1e9, 100 * flopsStep / med / 1e9 / peak))
        print(String(format: "name  baseline_ms  candidate_ms  ratio\ntrain_step_vs_pytorch_1.34s  1340  %.0f  %.2f", med * 1000, 1.34 / med))
        print("checksum \(checksum)")
    }
}
