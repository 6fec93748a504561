import Foundation
import Kernels
import KernelsAVX512

/// `tumorbench networks unet-ab --ab KNOB=V1,V2,… [--runs N]`: A/B timing of one Unet3D step under
/// the settings of a kernel knob, interleaved step by step (round r runs every setting once), so a
/// drift of the shared machine's speed hits every setting alike. Prints each setting's minimum and
/// median wall time over the rounds, and the median over rounds of its time ÷ the first setting's.
/// Knobs: the keys of `knobs`, each setting the named switch. `runSynthesis` does the same for whole syntheses.
enum UnetAB {
    static let knobs: [String: (Int) -> Void] = [
        "plane": { KernelContext.wholeIm2colMaxPlane = $0 },
        "blas": { BLASThreads.count = $0 },
        "attncore": { UnetAttentionCore.variant = $0 },
        "spatial": { UnetAttention.spatialBatched = $0 },
        "theads": { UnetAttention.temporalHeadGroups = $0 },
        "fold": { UnetAttention.cacheFoldedWeights = $0 },
        "wkt": { UnetAttention.cacheKeyWeightsTransposed = $0 != 0 },   // 1: spatial attention Wkᵀ built at load, 0: per call
        "sctx": { UnetAttention.spatialContextKernel = $0 },
        "attn": { UnetAttention.sessionDefaults($0 != 0) },
        "fused": { UnetAttention.fusedPasses = $0 },
        // Sleeps 0.3 s first: an OpenBLAS thread woken by the previous step spins ~0.1 s (its timeout) and would spill into this one.
        "unetblas1": { Unet3D.singleThreadedBLAS = $0 != 0; usleep(300_000) },
        "shift": { WholeIm2col.shiftedRows = $0 != 0 },
        "fuseadd": { Unet3D.fuseResidualAdd = $0 != 0 },
        "pointwise": { Unet3D.pointwiseGEMM = $0 != 0 },
        "dconv": { Unet3D.setConvolutionVariant($0) },   // bits: 1 shared pad columns, 2 12-row tiles, 4 vector rows, 8 pointer repack, 16 overlap, 32 concat-free skips
        "inline": { NetworkOps.inlineBelow = $0 },   // GroupNorm/SiLU/add passes on the calling thread below this many floats (0: always split)
        "gtasks": { NetworkOps.singleTasks = $0 != 0 },   // 1: GroupNorm/SiLU tasks handed out one at a time
        "tmlp": { Unet3D.batchedTimeMLP = $0 != 0 },   // 1: all ResnetBlocks' time-MLP projections as one GEMM per step
        "panel": { WholeIm2col.panelGEMM = $0 & 1 != 0; WholeIm2col.panelPointwise = $0 & 2 != 0 },   // bit 0: whole-im2col convs, bit 1: 1×1 convs on PanelGEMM
        "norminplace": { Unet3D.normsInPlace = $0 != 0 },   // 0: GroupNorm passes copy their input first (the session-4 path)
        "condshare": { Unet3D.reuseConditionShare = $0 != 0 },   // 1: the condition's init-conv share prepared once per run (outside the timed step), 0: convolve [x, cond] every step
        "fres": { Unet3D.fusedResnet = $0 },   // fused ResnetBlock bits: 1 conv-epilogue statistics, 4 one-pass norm2 + res_conv + add, 8 concat-free skips (default 13)
        "rband": { ResidualEpilogueAVX512.bandColumns = $0 },   // columns per band of the fused res_conv (32: one tile at a time)
        "s5": { let on = $0 != 0; Unet3D.setConvolutionVariant(on ? Unet3D.defaultConvolutionVariant : 0); WholeIm2col.panelGEMM = on; WholeIm2col.panelPointwise = on; UnetAttention.fusedPasses = on ? 15 : 0; NetworkOps.inlineBelow = on ? 100_000 : 0; Unet3D.normsInPlace = on },   // every session-5 default on (1) or off (0)
        "tcache": { Tensor.transposedPhaseWeightCache = $0 != 0 },   // 1: whole-im2col convT phase weights kept per weight tensor, one output pass
        "s6": { let on = $0 != 0; Unet3D.fusedResnet = on ? 13 : 0; Unet3D.reuseConditionShare = on; Tensor.transposedPhaseWeightCache = on; UnetAttention.cacheKeyWeightsTransposed = on },   // every session-6 default on (1) or off (0)
        "resnet4": { let on = $0 != 0; Unet3D.singleThreadedBLAS = on; WholeIm2col.shiftedRows = on; Unet3D.fuseResidualAdd = on; Unet3D.pointwiseGEMM = on; usleep(300_000) },
    ]

    /// The knob's name, its setter and the values of `--ab KNOB=V1,V2,…`.
    static func parse(_ spec: String, command: String) throws -> (name: String, set: (Int) -> Void, values: [Int]) {
        let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let set = knobs[parts[0]] else {
            throw ValidationError("\(command): --ab must be KNOB=V1,V2,… with KNOB one of \(knobs.keys.sorted())")
        }
        let values = parts[1].split(separator: ",").compactMap { Int($0) }
        guard !values.isEmpty else { throw ValidationError("\(command): no integer values in '\(parts[1])'") }
        return (parts[0], set, values)
    }

    /// `tumorbench networks early-ab|medium-ab --ab KNOB=V1,V2,… [--runs N]`: the same interleaving for a
    /// whole synthesis (`body`: condition, sampler, decode), one synthesis per setting per round.
    static func runSynthesis(_ command: String, spec: String, rounds: Int, gflop: Double, body: () -> Float) throws {
        let (name, set, values) = try parse(spec, command: command)
        var times = [[Double]](repeating: [], count: values.count)
        var checksums = [Float](repeating: 0, count: values.count)
        for round in 0...rounds {
            for (i, v) in values.enumerated() {
                set(v)
                let t0 = DispatchTime.now().uptimeNanoseconds
                checksums[i] = body()
                if round > 0 { times[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
            }
        }
        print("\(command) \(name) (\(rounds) interleaved rounds after one warm-up; load average \(NetworksBenchmark.loadAverage()))")
        for (i, v) in values.enumerated() {
            let s = times[i].sorted()
            let ratios = zip(times[i], times[0]).map { $0 / $1 }.sorted()
            print(String(format: "  %@=%-6d min %7.3f s  median %7.3f s (%.1f GFLOP/s)  median ratio to %@=%d: %.3f   (checksum %g)",
                         name as NSString, v, s[0], s[s.count / 2], gflop / s[s.count / 2], name as NSString, values[0],
                         ratios[ratios.count / 2], Double(checksums[i])))
        }
    }

    static func run(_ unet: Unet3D, x: Tensor, cond: Tensor, spec: String, rounds: Int) throws {
        let (name, set, values) = try parse(spec, command: "unet-ab")
        var times = [[Double]](repeating: [], count: values.count)
        // Also the time from the call to the init conv's output (relative-position bias, scratch, init conv).
        var initTimes = [[Double]](repeating: [], count: values.count)
        // Each setting's condition prepared once, outside the timed steps, as a sampler does per run.
        let prepared = values.map { v in set(v); return unet.prepare(cond: cond) }
        var cpu = [[Double]](repeating: [], count: values.count)
        func cpuSeconds() -> Double {
            var u = rusage()
            getrusage(RUSAGE_SELF.rawValue, &u)
            return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
        }
        for round in 0...rounds {
            for (i, v) in values.enumerated() {
                set(v)
                let c0 = cpuSeconds()
                let t0 = DispatchTime.now().uptimeNanoseconds
                var tInit = t0
                _ = unet(x, prepared: prepared[i], timesteps: [197], taps: { name, _ in
                    if name == "init_conv" { tInit = DispatchTime.now().uptimeNanoseconds }
                })
                if round > 0 {
                    times[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                    initTimes[i].append(Double(tInit - t0) / 1e6)
                    cpu[i].append((cpuSeconds() - c0) * 1e3)
                }
            }
        }
        print("unet-ab \(name) (\(rounds) interleaved rounds after one warm-up; load average \(NetworksBenchmark.loadAverage()))")
        for (i, v) in values.enumerated() {
            let s = times[i].sorted()
            // Paired: this setting's time over the first setting's time in the same round.
            let ratios = zip(times[i], times[0]).map { $0 / $1 }.sorted()
            let si = initTimes[i].sorted()
            // The same for the process's CPU time (user + system) per step: less sensitive to the workers
            // being descheduled by other load than the wall time.
            let cpuRatios = zip(cpu[i], cpu[0]).map { $0 / $1 }.sorted()
            print(String(format: "  %@=%-6d min %7.1f ms  median %7.1f ms  median ratio to %@=%d: %.3f   cpu median %7.1f ms, ratio %.3f   (to init_conv: min %.2f ms, median %.2f ms)",
                         name as NSString, v, s[0], s[s.count / 2], name as NSString, values[0], ratios[ratios.count / 2],
                         cpu[i].sorted()[cpu[i].count / 2], cpuRatios[cpuRatios.count / 2], si[0], si[si.count / 2]))
        }
    }

    struct ValidationError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}
