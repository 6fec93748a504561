/// Separable 3D Gaussian filter with the semantics of `scipy.ndimage.gaussian_filter`
/// (isotropic sigma over the three spatial axes, `mode='reflect'` i.e. d c b a | a b c d | d c b a,
/// `truncate=4.0`: radius int(4σ + 0.5), weights exp(-x²/2σ²) normalised to 1 in Double; axes
/// filtered in order 0, 1, 2 with a Float32 result after each pass, as scipy does for float32
/// input). A sigma ≤ 1e-15 leaves the input unchanged, like scipy.
///
/// Each pass is written as whole-row multiply-adds so the compiler vectorises it.
public enum GaussianBlur {
    /// The normalised 1D kernel of scipy's `_gaussian_kernel1d` (order 0), as Float.
    public static func kernel(sigma: Double, truncate: Double = 4.0) -> [Float] {
        let radius = Int(truncate * sigma + 0.5)
        var w = (-radius...radius).map { x -> Double in
            let t = Double(x) / sigma
            return _exp(-0.5 * t * t)
        }
        let s = w.reduce(0, +)
        for i in w.indices { w[i] /= s }
        return w.map(Float.init)
    }

    /// Returns the filtered grid.
    public static func filter(_ input: [Float], size: GridSize, sigma: Double, truncate: Double = 4.0) -> [Float] {
        precondition(input.count == size.count, "gaussian filter: \(input.count) values for a \(size) grid")
        guard sigma > 1e-15, size.count > 0 else { return input }
        let w = kernel(sigma: sigma, truncate: truncate)
        var a = input
        var b = [Float](repeating: 0, count: size.count)
        pass(axis: 0, from: a, to: &b, size: size, weights: w)
        pass(axis: 1, from: b, to: &a, size: size, weights: w)
        pass(axis: 2, from: a, to: &b, size: size, weights: w)
        return b
    }

    /// Scipy's reflect index (period 2n, edge repeated).
    @inline(__always)
    static func reflect(_ i: Int, _ n: Int) -> Int {
        if i >= 0 && i < n { return i }
        let period = 2 * n
        var m = i % period
        if m < 0 { m += period }
        return m < n ? m : period - 1 - m
    }

    private static func pass(axis: Int, from src: [Float], to dst: inout [Float], size: GridSize, weights w: [Float]) {
        let r = (w.count - 1) / 2
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
                switch axis {
                case 0:   // planes of Y·Z contiguous values
                    let plane = size.y * size.z
                    for x in 0..<size.x {
                        let o = d.baseAddress! + x * plane
                        o.initialize(repeating: 0, count: plane)
                        for k in -r...r {
                            let wk = w[k + r]
                            let inp = s.baseAddress! + reflect(x + k, size.x) * plane
                            for i in 0..<plane { o[i] += wk * inp[i] }
                        }
                    }
                case 1:   // rows of Z contiguous values
                    let plane = size.y * size.z
                    for x in 0..<size.x {
                        for y in 0..<size.y {
                            let o = d.baseAddress! + x * plane + y * size.z
                            o.initialize(repeating: 0, count: size.z)
                            for k in -r...r {
                                let wk = w[k + r]
                                let inp = s.baseAddress! + x * plane + reflect(y + k, size.y) * size.z
                                for i in 0..<size.z { o[i] += wk * inp[i] }
                            }
                        }
                    }
                default:  // along the contiguous axis: pad each row, then shifted multiply-adds
                    let n = size.z
                    var padded = [Float](repeating: 0, count: n + 2 * r)
                    padded.withUnsafeMutableBufferPointer { p in
                        for row in 0..<(size.x * size.y) {
                            let inp = s.baseAddress! + row * n
                            for i in 0..<(n + 2 * r) { p[i] = inp[reflect(i - r, n)] }
                            let o = d.baseAddress! + row * n
                            o.initialize(repeating: 0, count: n)
                            for k in 0..<(2 * r + 1) {
                                let wk = w[k]
                                let q = p.baseAddress! + k
                                for i in 0..<n { o[i] += wk * q[i] }
                            }
                        }
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _exp(_ x: Double) -> Double { Glibc.exp(x) }
#else
import Foundation
@inline(__always) func _exp(_ x: Double) -> Double { Foundation.exp(x) }
#endif
