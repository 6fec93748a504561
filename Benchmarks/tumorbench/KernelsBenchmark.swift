import Foundation
import Kernels
import KernelsAVX512

/// `tumorbench kernels`: raw cblas_sgemm GFLOP/s, then the reference's heavy convolutions at real
/// size, each as time, GFLOP/s (FLOP = 2·MAC, gather form) and ratio to the sgemm figure.
enum KernelsBenchmark {
    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// One discarded warm-up, then `runs` timed runs; returns the best and median seconds.
    static func time(runs: Int, _ body: () -> Float) -> (best: Double, median: Double, checksum: Float) {
        var checksum = body()
        var times: [Double] = []
        for _ in 0..<runs {
            let t0 = now()
            checksum += body()
            times.append(now() - t0)
        }
        times.sort()
        return (times[0], times[times.count / 2], checksum)
    }

    static func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let n = Tensor.elementCount(shape)
        var data = [Float](repeating: 0, count: n)
        for i in 0..<n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            data[i] = Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1
        }
        return Tensor(shape: shape, data: data)
    }

    static func sgemm(m: Int, n: Int, k: Int, runs: Int) -> Double {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        let r = time(runs: runs) {
            c.withUnsafeMutableBufferPointer { RawBLAS.sgemm(m: m, n: n, k: k, a: a, b: b, c: $0.baseAddress!) }
            return c[0]
        }
        return 2 * Double(m * n * k) / r.best / 1e9
    }

    struct ConvCase {
        var name: String
        var input: [Int]       // N, C, D, H, W
        var weight: [Int]
        var stride: [Int]
        var padding: Padding3d
        var transposed = false
        var tPadding: [Int] = [0, 0, 0]
        var runs = 10
        var kind: String       // "3^3", "T", "other"
    }

    static func run(arguments: [String]) {
        BLASCoreType.reexecIfUnrecognised()
        let env = ProcessInfo.processInfo.environment
        let threads = Int(env["TUMORBENCH_THREADS"] ?? "") ?? 2
        KernelContext.threads = threads
        if let kb = Int(env["TUMORBENCH_TILE_KB"] ?? "") { KernelContext.im2colTileBytes = kb << 10 }
        if let kb = Int(env["TUMORBENCH_CHUNK_KB"] ?? "") { KernelContext.directChannelChunkBytes = kb << 10 }
        if let band = Int(env["TUMORBENCH_BAND"] ?? "") { KernelContext.directBandPositions = band }
        // The whole-output im2col's AVX-512 panel GEMM: on/off, work split, K block (WholeIm2col).
        if let v = Int(env["TUMORBENCH_PANEL"] ?? "") { WholeIm2col.panelGEMM = v != 0 }
        if let v = Int(env["TUMORBENCH_PANEL_SPLIT"] ?? "") { WholeIm2col.panelSplit = v }
        if let v = Int(env["TUMORBENCH_PANEL_KB"] ?? "") { WholeIm2col.panelKBlock = v }
        if let v = Int(env["TUMORBENCH_MAXPLANE"] ?? "") { KernelContext.wholeIm2colMaxPlane = v }
        // TUMORBENCH_COMPARE=0: skip the timing of the portable GEMM path next to the AVX-512 one.
        let compare = KernelContext.useAVX512 && env["TUMORBENCH_COMPARE"] != "0"
        let avx512 = KernelContext.useAVX512
        let only = arguments.first
        if only == "panel-micro" { panelMicro(); return }
        if only == "pointwise-ab" { pointwiseAB(); return }
        print("tumorbench kernels — threads \(threads), im2col tile \(KernelContext.im2colTileBytes >> 10) KiB per thread, OpenBLAS core \(BLASCoreType.current)")
        print("convolutions: " + (KernelContext.useAVX512
            ? "AVX-512 direct kernels (channel chunk \(KernelContext.directChannelChunkBytes >> 10) KiB, band \(KernelContext.directBandPositions) positions) where they pay, else im2col + sgemm"
            : "im2col + sgemm (no AVX-512F, or TUMORSTREAM_NO_AVX512 set)"))
        print("machine: \(machineDescription())")
        // Baseline: sgemm on shapes like the convolution GEMMs (M = Cout, K = Cin·k³, N = tile columns).
        let gemms = [(1024, 1024, 1024), (64, 9216, 1728), (32, 9216, 864), (256, 2304, 1728)]
        var peak = 0.0
        for (m, n, k) in gemms {
            let g = sgemm(m: m, n: n, k: k, runs: 10)
            print(String(format: "sgemm M=%-5d N=%-5d K=%-5d %8.1f GFLOP/s", m, n, k, g))
            peak = max(peak, g)
        }
        print(String(format: "baseline (best sgemm above) %.1f GFLOP/s\n", peak))

        let same3 = Padding3d.same(kernel: [3, 3, 3], stride: [1, 1, 1])
        let same4 = Padding3d.same(kernel: [4, 4, 4], stride: [2, 2, 2])
        let cases: [ConvCase] = [
            ConvCase(name: "dec ResBlock conv3 32→32 @96³", input: [1, 32, 96, 96, 96], weight: [32, 32, 3, 3, 3],
                     stride: [1, 1, 1], padding: same3, runs: 3, kind: "3^3"),
            ConvCase(name: "dec ResBlock conv3 64→64 @48³", input: [1, 64, 48, 48, 48], weight: [64, 64, 3, 3, 3],
                     stride: [1, 1, 1], padding: same3, runs: 5, kind: "3^3"),
            ConvCase(name: "enc ResBlock conv3 32→32 @48³", input: [1, 32, 48, 48, 48], weight: [32, 32, 3, 3, 3],
                     stride: [1, 1, 1], padding: same3, kind: "3^3"),
            ConvCase(name: "enc ResBlock conv3 64→64 @24³", input: [1, 64, 24, 24, 24], weight: [64, 64, 3, 3, 3],
                     stride: [1, 1, 1], padding: same3, kind: "3^3"),
            ConvCase(name: "convT 64→64 24³→48³", input: [1, 64, 24, 24, 24], weight: [64, 64, 4, 4, 4],
                     stride: [2, 2, 2], padding: .uniform(1, mode: .replicate), transposed: true, tPadding: [3, 3, 3],
                     runs: 5, kind: "T"),
            ConvCase(name: "convT 64→32 48³→96³", input: [1, 64, 48, 48, 48], weight: [64, 32, 4, 4, 4],
                     stride: [2, 2, 2], padding: .uniform(1, mode: .replicate), transposed: true, tPadding: [3, 3, 3],
                     runs: 3, kind: "T"),
            ConvCase(name: "enc down k4s2 16→32 →48³", input: [1, 16, 96, 96, 96], weight: [32, 16, 4, 4, 4],
                     stride: [2, 2, 2], padding: same4, runs: 5, kind: "4^3 s2"),
            ConvCase(name: "enc down k4s2 32→64 →24³", input: [1, 32, 48, 48, 48], weight: [64, 32, 4, 4, 4],
                     stride: [2, 2, 2], padding: same4, kind: "4^3 s2"),
            ConvCase(name: "enc conv_first 1→16 @96³", input: [1, 1, 96, 96, 96], weight: [16, 1, 3, 3, 3],
                     stride: [1, 1, 1], padding: same3, runs: 5, kind: "small"),
            ConvCase(name: "dec conv_last 32→1 @96³", input: [1, 32, 96, 96, 96], weight: [1, 32, 3, 3, 3],
                     stride: [1, 1, 1], padding: same3, runs: 5, kind: "small"),
            ConvCase(name: "unet init (1,7,7) 17→24 @24³", input: [1, 17, 24, 24, 24], weight: [24, 17, 1, 7, 7],
                     stride: [1, 1, 1], padding: .symmetric([0, 3, 3]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 24→24 @24×24²", input: [1, 24, 24, 24, 24], weight: [24, 24, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 48→24 @24×24²", input: [1, 48, 24, 24, 24], weight: [24, 48, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 24→48 @24×12²", input: [1, 24, 24, 12, 12], weight: [48, 24, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 48→48 @24×12²", input: [1, 48, 24, 12, 12], weight: [48, 48, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 96→24 @24×12²", input: [1, 96, 24, 12, 12], weight: [24, 96, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 24→24 @24×12²", input: [1, 24, 24, 12, 12], weight: [24, 24, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 48→96 @24×6²", input: [1, 48, 24, 6, 6], weight: [96, 48, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 96→96 @24×6²", input: [1, 96, 24, 6, 6], weight: [96, 96, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 192→48 @24×6²", input: [1, 192, 24, 6, 6], weight: [48, 192, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 48→48 @24×6²", input: [1, 48, 24, 6, 6], weight: [48, 48, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 96→192 @24×3²", input: [1, 96, 24, 3, 3], weight: [192, 96, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 192→192 @24×3²", input: [1, 192, 24, 3, 3], weight: [192, 192, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 384→96 @24×3²", input: [1, 384, 24, 3, 3], weight: [96, 384, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet (1,3,3) 96→96 @24×3²", input: [1, 96, 24, 3, 3], weight: [96, 96, 1, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([0, 1, 1]), kind: "1x3x3"),
            ConvCase(name: "unet down (1,4,4) s(1,2,2) 24→24 @24×24²", input: [1, 24, 24, 24, 24], weight: [24, 24, 1, 4, 4],
                     stride: [1, 2, 2], padding: .symmetric([0, 1, 1]), kind: "other"),
            ConvCase(name: "unet down (1,4,4) s(1,2,2) 48→48 @24×12²", input: [1, 48, 24, 12, 12], weight: [48, 48, 1, 4, 4],
                     stride: [1, 2, 2], padding: .symmetric([0, 1, 1]), kind: "other"),
            ConvCase(name: "unet down (1,4,4) s(1,2,2) 96→96 @24×6²", input: [1, 96, 24, 6, 6], weight: [96, 96, 1, 4, 4],
                     stride: [1, 2, 2], padding: .symmetric([0, 1, 1]), kind: "other"),
            ConvCase(name: "unet up convT (1,4,4) 96→96 @24×3²→6²", input: [1, 96, 24, 3, 3], weight: [96, 96, 1, 4, 4],
                     stride: [1, 2, 2], padding: .none, transposed: true, tPadding: [0, 1, 1], kind: "T"),
            ConvCase(name: "unet up convT (1,4,4) 48→48 @24×6²→12²", input: [1, 48, 24, 6, 6], weight: [48, 48, 1, 4, 4],
                     stride: [1, 2, 2], padding: .none, transposed: true, tPadding: [0, 1, 1], kind: "T"),
            ConvCase(name: "unet up convT (1,4,4) 24→24 @24×12²→24²", input: [1, 24, 24, 12, 12], weight: [24, 24, 1, 4, 4],
                     stride: [1, 2, 2], padding: .none, transposed: true, tPadding: [0, 1, 1], kind: "T"),
            // The segmentation trainer's deepest level (6³ planes: the whole-output im2col); its input
            // gradient is the transposed convolution of the same shape.
            ConvCase(name: "trainer conv3 128→256 @6³", input: [1, 128, 6, 6, 6], weight: [256, 128, 3, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([1, 1, 1]), kind: "3^3"),
            ConvCase(name: "trainer conv3 256→256 @6³", input: [1, 256, 6, 6, 6], weight: [256, 256, 3, 3, 3],
                     stride: [1, 1, 1], padding: .symmetric([1, 1, 1]), kind: "3^3"),
            ConvCase(name: "trainer convT3 256→256 @6³", input: [1, 256, 6, 6, 6], weight: [256, 256, 3, 3, 3],
                     stride: [1, 1, 1], padding: .none, transposed: true, tPadding: [1, 1, 1], kind: "T"),
            ConvCase(name: "1×1 conv 64→8 @24³ (pre_vq)", input: [1, 64, 24, 24, 24], weight: [8, 64, 1, 1, 1],
                     stride: [1, 1, 1], padding: .none, kind: "other"),
        ]
        print("Each case alternates its runs with runs of two sgemm baselines in the same time window:")
        print("  sq = sgemm 1024³ (the figure above, re-measured), shape = sgemm M=Cout, N=min(out voxels, 2304), K=Cin·taps.")
        print("ratio = case GFLOP/s ÷ best sgemm GFLOP/s of its window (best of runs each; the machine is shared).")
        print(pad("case", 38) + pad("best ms", 10, left: true) + pad("median ms", 11, left: true) + pad("GFLOP/s", 9, left: true)
              + pad("sq GF/s", 9, left: true) + pad("ratio", 7, left: true) + pad("shape GF/s", 11, left: true)
              + pad("ratio", 7, left: true) + "  runs" + (compare ? "  [forced direct / GEMM path best ms, path the dispatch takes, GEMM ÷ best]" : ""))
        var summary: [(String, String, Double)] = []
        for c in cases {
            if let only, !c.name.contains(only) && only != "all" && only != "conv" { continue }
            let x = random(c.input, seed: 1)
            let w = random(c.weight, seed: 2)
            let bias = random([c.transposed ? c.weight[1] : c.weight[0]], seed: 3)
            var outShape: [Int] = []
            let body: () -> Float = {
                let y: Tensor
                if c.transposed {
                    let xp = c.padding.isZero ? x : x.padded(c.padding)
                    y = xp.convTranspose3d(weight: w, bias: bias, stride: c.stride, padding: c.tPadding)
                } else {
                    y = x.conv3d(weight: w, bias: bias, stride: c.stride, padding: c.padding)
                }
                outShape = y.shape
                return y[flat: y.count / 2]
            }
            // FLOP = 2·MAC in gather form: every output voxel × Cout × Cin·taps (taps of the sub-kernel for T).
            _ = body()
            // TUMORBENCH_PROFILE=N: only run the case N times in a row (for `perf record`), no timing.
            if let reps = Int(env["TUMORBENCH_PROFILE"] ?? "") {
                let t0 = now()
                for _ in 0..<reps { _ = body() }
                print(String(format: "%@: %d runs, %.3f ms each", c.name as NSString, reps, (now() - t0) / Double(reps) * 1e3))
                continue
            }
            let outVox = outShape[2...].reduce(1, *)
            let cout = c.transposed ? c.weight[1] : c.weight[0]
            let cin = c.transposed ? c.weight[0] : c.weight[1]
            var taps = 1
            for i in 0..<3 { taps *= c.transposed ? c.weight[2 + i] / c.stride[i] : c.weight[2 + i] }
            let gflop = 2 * Double(outVox) * Double(cout * cin * taps) / 1e9
            let square = SgemmProbe(m: 1024, n: 1024, k: 1024)
            let shaped = SgemmProbe(m: cout, n: min(outVox, 2304), k: cin * taps)
            // Each run: the two sgemm probes, then the default path and (with `compare`) the forced
            // direct kernels and the portable GEMM path, in rotating order so that each follows the
            // probes (cold caches) equally often.
            var times: [Double] = [], direct: [Double] = [], gemm: [Double] = []
            var sqBest = 0.0, shBest = 0.0
            let variants = compare ? 3 : 1
            func timed(_ variant: Int) -> Double {
                if variant == 1 { KernelContext.forceDirectConvolution = true }
                if variant == 2 { KernelContext.useAVX512 = false }
                defer { KernelContext.forceDirectConvolution = false; KernelContext.useAVX512 = avx512 }
                let t0 = now()
                _ = body()
                return now() - t0
            }
            for v in 1..<variants { _ = timed(v) }   // warm-up of the other paths
            for i in 0..<c.runs {
                sqBest = max(sqBest, square.best(of: 2))
                shBest = max(shBest, shaped.best(of: 3))
                for j in 0..<variants {
                    let v = (i + j) % variants
                    let t = timed(v)
                    if v == 0 { times.append(t) } else if v == 1 { direct.append(t) } else { gemm.append(t) }
                }
            }
            times.sort()
            var gemmNote = ""
            if compare {
                let d = direct.min()!, g = gemm.min()!
                let takesDirect = c.transposed
                    ? x.padded(c.padding).convTranspose3dTakesDirectPath(weight: w, stride: c.stride, padding: c.tPadding)
                    : x.conv3dTakesDirectPath(weight: w, stride: c.stride, padding: c.padding)
                // The default path (best ms) against the other one: forced direct, or the portable GEMM
                // lowering (the OpenBLAS whole-output im2col for tiny planes).
                gemmNote = String(format: "  [direct %.1f ms, gemm %.1f ms, takes %@, %@; gemm/best %.2f×]", d * 1e3, g * 1e3,
                                  takesDirect ? "direct" : "gemm", times[0] <= (takesDirect ? g : d) ? "faster" : "SLOWER",
                                  g / times[0])
            }
            let rate = gflop / times[0]
            print(pad(c.name, 38) + pad(String(format: "%.1f", times[0] * 1e3), 10, left: true)
                  + pad(String(format: "%.1f", times[times.count / 2] * 1e3), 11, left: true)
                  + pad(String(format: "%.1f", rate), 9, left: true) + pad(String(format: "%.1f", sqBest), 9, left: true)
                  + pad(String(format: "%.0f%%", 100 * rate / sqBest), 7, left: true)
                  + pad(String(format: "%.1f", shBest), 11, left: true)
                  + pad(String(format: "%.0f%%", 100 * rate / shBest), 7, left: true)
                  + "  \(c.runs)  [\(String(format: "%.2f", gflop)) GFLOP, out \(outShape.dropFirst()), \(c.kind)]" + gemmNote)
            summary.append((c.name, c.kind, rate / sqBest))
        }
        if only == nil || only == "all" || only == "pointwise" { pointwise() }
    }

    /// `tumorbench kernels panel-micro`: one thread, `PanelGEMM.multiply` on operands that stay in cache
    /// (M=96, K=128, one to three 48-column panels) against single-threaded sgemm 1024³, interleaved.
    static func panelMicro() {
        KernelContext.threads = 1
        let m = 96, k = Int(ProcessInfo.processInfo.environment["TUMORBENCH_PANEL_KB"] ?? "") ?? 128
        for n in [48, 144, 216] {
            let np = (n + 15) / 16 * 16
            let a = (0..<(m * k)).map { Float($0 % 7) * 0.1 }, b = (0..<(np * k)).map { Float($0 % 5) * 0.1 }
            var c = [Float](repeating: 0, count: m * n)
            let reps = 2000
            let square = SgemmProbe(m: 1024, n: 1024, k: 1024)
            var best = Double.infinity, sq = 0.0
            for _ in 0..<5 {
                sq = max(sq, square.best(of: 2))
                let t0 = now()
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    for _ in 0..<reps {
                        PanelGEMM.multiply(rows: 0, m, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, columns: 0, np,
                                           valid: n, c: cp.baseAddress!, ldc: n, bias: nil, kBlock: 0)
                    }
                }}}
                best = min(best, (now() - t0) / Double(reps))
            }
            let g = 2 * Double(m * n * k) / best / 1e9
            print(String(format: "panel M=%d N=%d K=%d: %.2f µs, %.1f GFLOP/s = %.0f%% of 1-thread sgemm 1024³ (%.1f)",
                         m, n, k, best * 1e6, g, 100 * g / sq, sq))
        }
    }

    /// `tumorbench kernels pointwise-ab`: the Unet's 1×1 convolutions (`pointwiseConv3d`, the up-path
    /// ResnetBlocks' res_conv) on `PanelGEMM` and on OpenBLAS, runs alternating; best and median of 20 each.
    static func pointwiseAB() {
        print("pointwiseConv3d, threads \(KernelContext.threads): PanelGEMM vs single-threaded OpenBLAS per worker (alternating runs)")
        let saved = WholeIm2col.panelPointwise
        defer { WholeIm2col.panelPointwise = saved }
        for (cin, cout, d, h) in [(48, 24, 24, 24), (96, 48, 24, 12), (192, 96, 24, 6), (384, 192, 24, 3), (72, 24, 24, 24), (144, 48, 24, 12)] {
            let x = random([1, cin, d, h, h], seed: 7), w = random([cout, cin, 1, 1, 1], seed: 8), b = random([cout], seed: 9)
            var t: [[Double]] = [[], []]
            for i in 0..<41 {
                for v in [0, 1] {
                    WholeIm2col.panelPointwise = v == 1
                    let t0 = now()
                    let y = x.pointwiseConv3d(weight: w, bias: b)
                    let dt = now() - t0
                    if i > 0 { t[v].append(dt) }
                    _ = y[flat: 0]
                }
            }
            let ratios = zip(t[1], t[0]).map { $0 / $1 }.sorted()
            for v in [0, 1] { t[v].sort() }
            let gflop = 2 * Double(cin * cout * d * h * h) / 1e9
            print(String(format: "  %3d→%-3d @%d×%d²: OpenBLAS best %.3f ms median %.3f | panel best %.3f ms median %.3f (%.0f GFLOP/s) | median paired ratio panel/OpenBLAS %.2f",
                         cin, cout, d, h, t[0][0] * 1e3, t[0][20] * 1e3, t[1][0] * 1e3, t[1][20] * 1e3, gflop / t[1][0], ratios[20]))
        }
    }

    /// Memory-bound ops on 32×96³ (113 MB) against a plain copy of the same tensor.
    static func pointwise() {
        print("\npointwise on [1, 32, 96, 96, 96] (113 MB in, 113 MB out); baseline = Tensor copy (read+write)")
        let x = random([1, 32, 96, 96, 96], seed: 4)
        let bytes = 2.0 * Double(x.count * 4)
        let copy = time(runs: 10) { var y = x; y[flat: 0] = 1; return y[flat: 1] }
        let base = bytes / copy.best / 1e9
        print(pad("copy", 38) + String(format: "%10.1f ms %7.1f GB/s", copy.best * 1e3, base))
        let gamma = random([32], seed: 5), beta = random([32], seed: 6)
        let ops: [(String, () -> Tensor)] = [
            ("silu", { x.silu() }),
            ("gelu", { x.gelu() }),
            ("add", { x + x }),
            ("groupNorm(32 groups)", { x.groupNorm(groups: 32, weight: gamma, bias: beta, eps: 1e-6) }),
            ("channelLayerNorm", { x.channelLayerNorm(gain: gamma) }),
            ("gaussianFilter σ=(1,1,1)", { x.gaussianFilter(sigma: [1, 1, 1]) }),
            ("gaussianFilter σ=(4,4,4)", { x.gaussianFilter(sigma: [4, 4, 4]) }),
        ]
        for (name, op) in ops {
            let r = time(runs: 10) { op()[flat: 7] }
            let gbs = bytes / r.best / 1e9
            print(pad(name, 38) + String(format: "%10.1f ms %7.1f GB/s  %5.0f%% of copy", r.best * 1e3, gbs, 100 * gbs / base))
        }
    }

    static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let n = s.count
        if n >= width { return s + " " }
        let fill = String(repeating: " ", count: width - n)
        return left ? fill + s : s + fill
    }

    /// A reusable sgemm of one shape; `best(of:)` times it and returns the best GFLOP/s.
    final class SgemmProbe {
        let m: Int, n: Int, k: Int
        var a: [Float], b: [Float], c: [Float]
        init(m: Int, n: Int, k: Int) {
            self.m = m; self.n = n; self.k = k
            a = (0..<(m * k)).map { Float($0 % 7) * 0.1 }
            b = (0..<(k * n)).map { Float($0 % 5) * 0.1 }
            c = [Float](repeating: 0, count: m * n)
            _ = best(of: 1)
        }
        func best(of runs: Int) -> Double {
            var best = Double.infinity
            for _ in 0..<runs {
                let t0 = now()
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    RawBLAS.sgemm(m: m, n: n, k: k, a: ap.baseAddress!, b: bp.baseAddress!, c: cp.baseAddress!) } } }
                best = min(best, now() - t0)
            }
            return 2 * Double(m * n * k) / best / 1e9
        }
    }

    static func machineDescription() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(RawBLAS.configuration)"
    }
}

extension Padding3d {
    var isZero: Bool { front == [0, 0, 0] && back == [0, 0, 0] }
}
