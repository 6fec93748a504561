import COpenBLAS
import Foundation

/// Measures raw `cblas_sgemm` throughput (GFLOP/s) on an m×k·k×n product: the baseline that
/// benchmarks quote their efficiency against, measured in the same run.
public enum SGEMMProbe {

    public static func gflops(m: Int, n: Int, k: Int, repeats: Int = 10) -> Double {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        func run() {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        }
        run()
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<repeats { run() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return 2 * Double(m) * Double(n) * Double(k) * Double(repeats) / seconds / 1e9
    }
}

extension UNet {
    /// Convolution FLOPs (2·MAC, gather form) of one forward pass on a [1, C, D, H, W] input.
    public func forwardFLOPs(inputSize: [Int]) -> Double {
        var total = 0.0
        var size = inputSize.map(Double.init)
        // Walk the levels: down convs shrink by the stride, up convs restore it.
        func conv(_ cin: Int, _ cout: Int, _ k: Int, _ spatial: [Double]) -> Double {
            2 * Double(cin * cout * k * k * k) * spatial.reduce(1, *)
        }
        let ch = config.channels, st = config.strides, r = config.numResUnits
        var sizes: [[Double]] = []
        var inC = config.inChannels
        for (i, c) in ch.enumerated() {
            let s = i < st.count ? st[i] : 1
            size = size.map { $0 / Double(s) }
            sizes.append(size)
            let units = max(1, r)
            total += conv(inC, c, 3, size) + Double(units - 1) * conv(c, c, 3, size)
            if r > 0 && (s != 1 || inC != c) { total += conv(inC, c, s == 1 ? 1 : 3, size) }
            inC = c
        }
        // Up path: level i (from the bottom up) takes cat channels to ch[i-1] (or outChannels).
        for i in stride(from: ch.count - 2, through: 0, by: -1) {
            let upIn = i == ch.count - 2 ? ch[i] + ch[i + 1] : 2 * ch[i]
            let out = i == 0 ? config.outChannels : ch[i - 1]
            let inSize = sizes[i]
            total += 2 * Double(upIn * out * 27) * inSize.reduce(1, *)  // transposed conv, gather form
            let outSize = i == 0 ? inputSize.map(Double.init) : sizes[i - 1]
            if r > 0 { total += conv(out, out, 3, outSize) }
        }
        return total
    }
}
