// Single-process paired timing of the direct AVX-512 convolution (Sources/KernelsAVX512) under two
// switch settings (`DirectConvolution.setVariant` bits), alternated call by call, against a pure-FMA
// loop of the same FLOP count (the core's peak, measured in the same loop). Built by
// scripts/directconv_bench.sh; see Benchmarks/results/networks.md for how it was used.
import Foundation

@inline(never) func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// 24 independent FMA chains: the FMA-port peak of one core.
@inline(never) func peak(_ n: Int, _ w: UnsafePointer<Float>) -> Float {
    var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V(), a8 = V(), a9 = V(), a10 = V(), a11 = V()
    var a12 = V(), a13 = V(), a14 = V(), a15 = V(), a16 = V(), a17 = V(), a18 = V(), a19 = V(), a20 = V(), a21 = V(), a22 = V(), a23 = V()
    let x0 = load(w), x1 = load(w + 16), x2 = load(w + 32)
    let b0 = V(repeating: w[3]), b1 = V(repeating: w[5]), b2 = V(repeating: w[7]), b3 = V(repeating: w[9])
    for _ in 0..<n {
        a0.addProduct(b0, x0); a1.addProduct(b0, x1); a2.addProduct(b0, x2)
        a3.addProduct(b1, x0); a4.addProduct(b1, x1); a5.addProduct(b1, x2)
        a6.addProduct(b2, x0); a7.addProduct(b2, x1); a8.addProduct(b2, x2)
        a9.addProduct(b3, x0); a10.addProduct(b3, x1); a11.addProduct(b3, x2)
        a12.addProduct(b0, x0); a13.addProduct(b0, x1); a14.addProduct(b0, x2)
        a15.addProduct(b1, x0); a16.addProduct(b1, x1); a17.addProduct(b1, x2)
        a18.addProduct(b2, x0); a19.addProduct(b2, x1); a20.addProduct(b2, x2)
        a21.addProduct(b3, x0); a22.addProduct(b3, x1); a23.addProduct(b3, x2)
    }
    return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15 + a16 + a17 + a18 + a19
            + a20 + a21 + a22 + a23).sum()
}

func random(_ n: Int) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
    for i in 0..<n { p[i] = Float((i * 7919) % 101) / 101 - 0.5 }
    return p
}

let args = CommandLine.arguments
let threads = args.count > 1 ? Int(args[1])! : 1
let variant = args.count > 2 ? Int(args[2])! : DirectConvolution.defaultVariant
let base = args.count > 3 ? Int(args[3])! : 0
let rounds = 40

/// Times `body` under `base` and `variant`, alternated; prints both and the new one's share of peak.
func bench(_ name: String, flops: Double, outCount: Int, output y: UnsafeMutablePointer<Float>, _ body: () -> Void) {
    DirectConvolution.setVariant(base); body()
    let reference = Array(UnsafeBufferPointer(start: y, count: outCount))
    DirectConvolution.setVariant(variant); body()
    var same = true
    for i in 0..<outCount where reference[i] != y[i] { same = false; break }
    var tBase = 1e9, tNew = 1e9, tPeak = 1e9
    let w = random(64)
    let iterations = Int(flops / (24 * 32)) / threads
    for _ in 0..<rounds {
        DirectConvolution.setVariant(base); var t = now(); body(); tBase = min(tBase, now() - t)
        DirectConvolution.setVariant(variant); t = now(); body(); tNew = min(tNew, now() - t)
        t = now()
        if threads == 1 { _ = peak(iterations, w) } else { DispatchQueue.concurrentPerform(iterations: threads) { _ in _ = peak(iterations, w) } }
        tPeak = min(tPeak, now() - t)
    }
    print(name.padding(toLength: 34, withPad: " ", startingAt: 0)
          + String(format: " base %7.3f ms %4.0f%% | new %7.3f ms %4.0f%% of peak | new/base %.3f | %@", tBase * 1e3, 100 * tPeak / tBase,
                   tNew * 1e3, 100 * tPeak / tNew, tNew / tBase, same ? "same floats" : "DIFFERENT"))
}

print("threads \(threads), variant \(variant) vs \(base); min of \(rounds) alternated calls; peak = 24-chain FMA loop, same FLOPs")
// The Unet's (1,k,k) stride-1 zero-padded convs on 24 frames.
for (cin, cout, hw, k) in [(24, 24, 24, 3), (48, 24, 24, 3), (24, 48, 12, 3), (48, 48, 12, 3), (96, 24, 12, 3), (24, 24, 12, 3),
                           (17, 24, 24, 7)] {
    let d = 24, f = k / 2
    let x = random(cin * d * hw * hw), w = random(cout * cin * k * k), b = random(cout)
    let y = UnsafeMutablePointer<Float>.allocate(capacity: cout * d * hw * hw)
    bench("(1,\(k),\(k)) \(cin)→\(cout) @24×\(hw)²", flops: 2.0 * Double(d * hw * hw * cout * cin * k * k), outCount: cout * d * hw * hw, output: y) {
        DirectConvolution.conv3d(input: x, channels: cin, inputDims: (d, hw, hw), weight: w, outChannels: cout, kernel: (1, k, k),
                                 stride: (1, 1, 1), front: (0, f, f), replicate: false, bias: b, output: y, outputDims: (d, hw, hw),
                                 threads: threads)
    }
}
do {   // downsample (1,4,4) stride (1,2,2), 24² → 12²
    let c = 24, x = random(c * 24 * 576), w = random(c * c * 16), b = random(c), y = UnsafeMutablePointer<Float>.allocate(capacity: c * 24 * 144)
    bench("down (1,4,4)s2 24→24 24²→12²", flops: 2.0 * Double(24 * 144 * c * c * 16), outCount: c * 24 * 144, output: y) {
        DirectConvolution.conv3d(input: x, channels: c, inputDims: (24, 24, 24), weight: w, outChannels: c, kernel: (1, 4, 4),
                                 stride: (1, 2, 2), front: (0, 1, 1), replicate: false, bias: b, output: y, outputDims: (24, 12, 12),
                                 threads: threads)
    }
}
do {   // upsample convT (1,4,4) stride (1,2,2) padding (0,1,1), 12² → 24² (FLOPs of the gather form: 4 taps per output)
    let c = 24, x = random(c * 24 * 144), w = random(c * c * 16), b = random(c), y = UnsafeMutablePointer<Float>.allocate(capacity: c * 24 * 576)
    bench("up convT (1,4,4)s2 24→24 12²→24²", flops: 2.0 * Double(24 * 576 * c * c * 4), outCount: c * 24 * 576, output: y) {
        DirectConvolution.convTranspose3d(input: x, channels: c, inputDims: (24, 12, 12), weight: w, weightOutChannels: c, outChannels: c,
                                          kernel: (1, 4, 4), stride: (1, 2, 2), padding: (0, 1, 1), bias: b, output: y,
                                          outputDims: (24, 24, 24), threads: threads)
    }
}
do {   // VQ-GAN decoder form: replicate-padded 3³, 32→32, a 10×48² slab
    let c = 32, x = random(c * 10 * 2304), w = random(c * c * 27), b = random(c), y = UnsafeMutablePointer<Float>.allocate(capacity: c * 10 * 2304)
    bench("dec 3³ replicate 32→32 @10×48²", flops: 2.0 * Double(10 * 2304 * c * c * 27), outCount: c * 10 * 2304, output: y) {
        DirectConvolution.conv3d(input: x, channels: c, inputDims: (10, 48, 48), weight: w, outChannels: c, kernel: (3, 3, 3),
                                 stride: (1, 1, 1), front: (1, 1, 1), replicate: true, bias: b, output: y, outputDims: (10, 48, 48),
                                 threads: threads)
    }
}
do {   // VQ-GAN upsample form: convT k4 s2 p3 on a replicate-padded input, 32→16 → 8×48²
    let ci = 32, co = 16, x = random(ci * 6 * 26 * 26), w = random(ci * co * 64), b = random(co)
    let y = UnsafeMutablePointer<Float>.allocate(capacity: co * 8 * 2304)
    bench("dec convT k4s2 32→16 →8×48²", flops: 2.0 * Double(8 * 2304 * co * ci * 8), outCount: co * 8 * 2304, output: y) {
        DirectConvolution.convTranspose3d(input: x, channels: ci, inputDims: (6, 26, 26), weight: w, weightOutChannels: co, outChannels: co,
                                          kernel: (4, 4, 4), stride: (2, 2, 2), padding: (3, 3, 3), bias: b, output: y,
                                          outputDims: (8, 48, 48), threads: threads)
    }
}
do {   // zero-padded 3³ (trainer-like), 16→16 @16×48²
    let c = 16, x = random(c * 16 * 2304), w = random(c * c * 27), b = random(c), y = UnsafeMutablePointer<Float>.allocate(capacity: c * 16 * 2304)
    bench("3³ zero 16→16 @16×48²", flops: 2.0 * Double(16 * 2304 * c * c * 27), outCount: c * 16 * 2304, output: y) {
        DirectConvolution.conv3d(input: x, channels: c, inputDims: (16, 48, 48), weight: w, outChannels: c, kernel: (3, 3, 3),
                                 stride: (1, 1, 1), front: (1, 1, 1), replicate: false, bias: b, output: y, outputDims: (16, 48, 48),
                                 threads: threads)
    }
}
