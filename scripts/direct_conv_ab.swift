// A/B harness for the direct convolution kernels alone (no BLAS, no Tensor): times the six
// convolutions of issue #3 through `DirectConvolution` and reports wall-clock GFLOP/s and
// "cpu" GFLOP/s = FLOP ÷ (process CPU time ÷ threads), which is far less sensitive to the other
// processes of a shared machine than wall-clock time. Not part of the package build.
//
//   mkdir -p /tmp/kb/new && cp Sources/KernelsAVX512/*.swift /tmp/kb/new/
//   cp scripts/direct_conv_ab.swift /tmp/kb/new/main.swift      # top-level code must be main.swift
//   swiftc -O -Ounchecked -target-cpu skylake-avx512 -module-name KB /tmp/kb/new/*.swift -o /tmp/kb/kb_new
//   /tmp/kb/kb_new [c96 c48 c48s c24 t96 t48]     # env: T (threads, 2), BAND, CHUNK (KiB)
//   env FRESH=1: a fresh output array every run (first-touch page faults, like a Tensor output);
//   FRESH=1 HUGE=1: that array advised MADV_HUGEPAGE (14) first, like KernelContext.hugePageOutputs.
//
// Build a second binary from another commit's Sources/KernelsAVX512 (drop the BAND line there if
// it predates `bandPositions`) and alternate the two. Checksums must agree between versions.
import Foundation
func cpu() -> Double { var t = timespec(); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
func rnd(_ n: Int, _ seed: UInt64) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<n).map { _ in s ^= s << 13; s ^= s >> 7; s ^= s << 17; return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1 }
}
struct Case { var name: String; var cin: Int; var cout: Int; var inp: Int; var out: Int; var k: (Int,Int,Int); var t: Bool; var runs: Int; var planes: Int = 0 }
let all = [
  Case(name: "c96", cin: 32, cout: 32, inp: 96, out: 96, k: (3,3,3), t: false, runs: 3),
  Case(name: "c48", cin: 64, cout: 64, inp: 48, out: 48, k: (3,3,3), t: false, runs: 5),
  Case(name: "c48s", cin: 32, cout: 32, inp: 48, out: 48, k: (3,3,3), t: false, runs: 8),
  Case(name: "c24", cin: 64, cout: 64, inp: 24, out: 24, k: (3,3,3), t: false, runs: 10),
  Case(name: "t96", cin: 64, cout: 32, inp: 50, out: 96, k: (4,4,4), t: true, runs: 3),
  Case(name: "t48", cin: 64, cout: 64, inp: 26, out: 48, k: (4,4,4), t: true, runs: 5),
]
let args = CommandLine.arguments.dropFirst()
let threads = Int(ProcessInfo.processInfo.environment["T"] ?? "2")!
if let b = Int(ProcessInfo.processInfo.environment["BAND"] ?? "") { DirectConvolution.bandPositions = b }
if let b = Int(ProcessInfo.processInfo.environment["CHUNK"] ?? "") { DirectConvolution.channelChunkBytes = b << 10 }
for c in all where args.isEmpty || args.contains(c.name) {
    let x = rnd(c.cin * c.inp * c.inp * c.inp, 1)
    let wcount = c.cin * c.cout * c.k.0 * c.k.1 * c.k.2
    let w = rnd(wcount, 2), b = rnd(c.cout, 3)
    var y = [Float](repeating: 0, count: c.cout * c.out * c.out * c.out)
    let fresh = ProcessInfo.processInfo.environment["FRESH"] != nil, huge = ProcessInfo.processInfo.environment["HUGE"] != nil
    let body = {
        if fresh {
            y = [Float]()
            let n = c.cout * c.out * c.out * c.out
            y = [Float](unsafeUninitializedCapacity: n) { buf, cnt in
                if huge {
                    let a = (Int(bitPattern: buf.baseAddress!) + 4095) & ~4095
                    let e = (Int(bitPattern: buf.baseAddress! + n)) & ~4095
                    _ = madvise(UnsafeMutableRawPointer(bitPattern: a), e - a, 14)
                }
                cnt = n }
        }
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
            if c.t {
                DirectConvolution.convTranspose3d(input: xp.baseAddress!, channels: c.cin, inputDims: (c.inp, c.inp, c.inp), weight: wp.baseAddress!, weightOutChannels: c.cout, outChannels: c.cout, kernel: c.k, stride: (2,2,2), padding: (3,3,3), bias: bp.baseAddress!, output: yp.baseAddress!, outputDims: (c.out, c.out, c.out), threads: threads)
            } else {
                DirectConvolution.conv3d(input: xp.baseAddress!, channels: c.cin, inputDims: (c.inp, c.inp, c.inp), weight: wp.baseAddress!, outChannels: c.cout, kernel: c.k, stride: (1,1,1), front: (1,1,1), replicate: true, bias: bp.baseAddress!, output: yp.baseAddress!, outputDims: (c.out, c.out, c.out), threads: threads)
            }
        }}}}
    }
    body()
    var best = 1e9, bestCPU = 1e9
    for _ in 0..<c.runs { let t0 = now(), c0 = cpu(); body(); best = min(best, now() - t0); bestCPU = min(bestCPU, (cpu() - c0) / Double(threads)) }
    let taps = c.t ? 8 : 27
    let gf = 2.0 * Double(c.out * c.out * c.out) * Double(c.cin * c.cout * taps) / best / 1e9
    var cs = 0.0; for i in stride(from: 0, to: y.count, by: 97) { cs += Double(y[i]) }
    let gfc = gf * best / bestCPU
    print(String(format: "%@ %8.1f ms %7.1f GF/s  cpu %8.1f ms %7.1f GF/s checksum %.6e", c.name, best * 1e3, gf, bestCPU * 1e3, gfc, cs))
}
