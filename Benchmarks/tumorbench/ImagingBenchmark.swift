import Foundation
import Imaging
import Kernels

/// `tumorbench imaging [CT [LABEL]] [--runs N]`: resampling example_ct to 1 mm (trilinear CT,
/// nearest labels) against baselines measured in the same run:
/// - memcpy of the output bytes (the floor: writing the result once),
/// - a naive single-threaded trilinear (8 taps per voxel, direct loop) for the CT.
/// Also times NIfTI reading and phantom generation. Warm-up once, median of N runs (default 10).
enum ImagingBenchmark {
    static func run(_ args: [String]) throws {
        var positional: [String] = []
        var runs = 10
        var i = 0
        while i < args.count {
            if args[i] == "--runs", i + 1 < args.count { runs = Int(args[i + 1]) ?? runs; i += 2; continue }
            positional.append(args[i]); i += 1
        }
        let ctPath = positional.first ?? "../shared/data/totalsegmentator/example_ct.nii.gz"
        let labelPath = positional.count > 1 ? positional[1]
            : "../shared/data/totalsegmentator/example_seg_fast_force_split.nii.gz"
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, imaging threads \(ImagingThreads.count), runs \(runs) (median, after 1 warm-up)")

        let (ct, labels) = try NIfTI.readPair(ct: ctPath, label: labelPath)
        let grid = ResampleGrid(inputShape: ct.shape, affine: ct.affine, targetSpacing: [1, 1, 1])
        let outCount = grid.outputShape.reduce(1, *)
        print("input \(ct.shape) spacing \(ct.spacing.map { String(format: "%.3g", $0) }) -> output \(grid.outputShape) (\(outCount) voxels)")
        print(pad("case", 44) + pad("baseline_ms", 12, left: true) + pad("candidate_ms", 14, left: true) + pad("ratio", 8, left: true))

        // memcpy baselines of the output sizes.
        let srcF = UnsafeMutablePointer<Float>.allocate(capacity: outCount), dstF = UnsafeMutablePointer<Float>.allocate(capacity: outCount)
        srcF.initialize(repeating: 1, count: outCount); dstF.initialize(repeating: 0, count: outCount)
        defer { srcF.deallocate(); dstF.deallocate() }
        let memcpyF = median(runs) { memcpy(dstF, srcF, outCount * 4); return Double(dstF[outCount / 2]) }
        let memcpyB = median(runs) { memcpy(dstF, srcF, outCount); return Double(dstF[0]) }
        // A fresh output tensor written once (allocation and first-touch page faults included).
        let freshF = median(runs) {
            var t = Tensor(uninitialized: grid.outputShape)
            t.withUnsafeMutableBufferPointer { memcpy($0.baseAddress!, srcF, outCount * 4) }
            return Double(t[flat: outCount / 2])
        }

        let saved = ImagingThreads.count
        for threads in Array(Set([1, saved])).sorted() {
            ImagingThreads.count = threads
            let tri = median(runs) { Double(ct.resampled(spacing: [1, 1, 1]).voxels[flat: outCount / 3]) }
            let near = median(runs) { Double(labels.resampled(spacing: [1, 1, 1]).labels[outCount / 3]) }
            line("trilinear CT, \(threads) thread(s) vs memcpy", memcpyF, tri)
            line("nearest label, \(threads) thread(s) vs memcpy", memcpyB, near)
        }
        ImagingThreads.count = saved
        let triFresh = median(runs) { Double(ct.resampled(spacing: [1, 1, 1]).voxels[flat: outCount / 3]) }
        line("trilinear CT vs fresh tensor + memcpy", freshF, triFresh)
        let naiveRuns = max(1, min(runs, 3))
        let naive = median(naiveRuns) { naiveTrilinear(ct, grid) }
        let tri = median(runs) { Double(ct.resampled(spacing: [1, 1, 1]).voxels[flat: outCount / 3]) }
        line("trilinear CT vs naive 1-thread (\(naiveRuns) runs)", naive, tri)

        let read = median(runs) { Double((try? NIfTI.readVolume(ctPath))?.voxelCount ?? 0) }
        print(pad("read example_ct.nii.gz", 44) + pad("-", 12, left: true) + pad(String(format: "%.1f", read), 14, left: true))
        let phantom = median(max(1, runs / 2)) { Double(Phantom.generate(seed: 1).ct.voxelCount) }
        print(pad("phantom 200x160x160", 44) + pad("-", 12, left: true) + pad(String(format: "%.1f", phantom), 14, left: true))
    }

    static func line(_ name: String, _ base: Double, _ cand: Double) {
        print(pad(name, 44) + pad(String(format: "%.1f", base), 12, left: true)
              + pad(String(format: "%.1f", cand), 14, left: true) + pad(String(format: "%.2f", cand / base), 8, left: true))
    }

    static func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, n - s.count))
        return left ? fill + s : s + fill
    }

    /// Median wall time in ms of `runs` calls after one warm-up; the checksum keeps the work alive.
    static func median(_ runs: Int, _ body: () -> Double) -> Double {
        var sink = body()
        var times: [Double] = []
        for _ in 0..<runs {
            let t = DispatchTime.now().uptimeNanoseconds
            sink += body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e6)
        }
        if sink.isNaN { print("checksum NaN") }
        return times.sorted()[times.count / 2]
    }

    /// The textbook loop: for each output voxel, 8 input taps and weights (border-clamped).
    static func naiveTrilinear(_ v: Volume, _ g: ResampleGrid) -> Double {
        let s = v.shape, o = g.outputShape
        var out = [Float](repeating: 0, count: o.reduce(1, *))
        v.voxels.withUnsafeBufferPointer { src in
            var n = 0
            for a in 0..<o[0] { for b in 0..<o[1] { for c in 0..<o[2] {
                let p = [Double(a) * g.step[0], Double(b) * g.step[1], Double(c) * g.step[2]]
                var i0 = [0, 0, 0], i1 = [0, 0, 0], w = [0.0, 0.0, 0.0]
                for d in 0..<3 {
                    let q = min(max(p[d], 0), Double(s[d] - 1))
                    i0[d] = Int(q); i1[d] = min(i0[d] + 1, s[d] - 1); w[d] = q - Double(i0[d])
                }
                var acc = 0.0
                for corner in 0..<8 {
                    let ix = corner & 4 != 0 ? i1[0] : i0[0], iy = corner & 2 != 0 ? i1[1] : i0[1], iz = corner & 1 != 0 ? i1[2] : i0[2]
                    let wt = (corner & 4 != 0 ? w[0] : 1 - w[0]) * (corner & 2 != 0 ? w[1] : 1 - w[1]) * (corner & 1 != 0 ? w[2] : 1 - w[2])
                    acc += wt * Double(src[(ix * s[1] + iy) * s[2] + iz])
                }
                out[n] = Float(acc); n += 1
            }}}
        }
        return Double(out[out.count / 3])
    }
}
