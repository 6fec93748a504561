import Foundation
import XCTest
import Kernels

final class NormalizationTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    /// Direct GroupNorm in Double (biased variance).
    func naiveGroupNorm(_ x: Tensor, groups: Int, weight: [Float]?, bias: [Float]?, eps: Double) -> Tensor {
        let n = x.shape[0], c = x.shape[1], inner = x.count / (n * c), gs = c / groups
        let xs = x.scalars
        var y = [Float](repeating: 0, count: x.count)
        for b in 0..<n { for g in 0..<groups {
            let idx = (0..<gs).flatMap { cl in (0..<inner).map { ((b * c + g * gs + cl) * inner) + $0 } }
            let mean = idx.reduce(0.0) { $0 + Double(xs[$1]) } / Double(idx.count)
            let v = idx.reduce(0.0) { $0 + pow(Double(xs[$1]) - mean, 2) } / Double(idx.count)
            for i in idx {
                let ch = (i / inner) % c
                y[i] = Float((Double(xs[i]) - mean) / sqrt(v + eps) * Double(weight?[ch] ?? 1) + Double(bias?[ch] ?? 0))
            }
        }}
        return Tensor(shape: x.shape, data: y)
    }

    func testGroupNormMatchesNaive() {
        var rng = SeededRandom(seed: 10)
        for (shape, groups) in [([2, 6, 3, 4, 5], 3), ([1, 8, 5, 3, 3], 8), ([2, 4, 7], 1), ([1, 64, 3, 3, 3], 32)] {
            let x = rng.tensor(shape, scale: 3).affine(scale: 1, shift: 2)
            let w = rng.tensor([shape[1]]), b = rng.tensor([shape[1]])
            assertClose(x.groupNorm(groups: groups, weight: w, bias: b, eps: 1e-6),
                        naiveGroupNorm(x, groups: groups, weight: w.scalars, bias: b.scalars, eps: 1e-6), rtol: 1e-4, atol: 1e-5)
            assertClose(x.groupNorm(groups: groups, eps: 1e-5),
                        naiveGroupNorm(x, groups: groups, weight: nil, bias: nil, eps: 1e-5), rtol: 1e-4, atol: 1e-5)
        }
    }

    func testInstanceNormIsGroupNormWithOneChannelPerGroup() {
        var rng = SeededRandom(seed: 11)
        let x = rng.tensor([2, 3, 4, 5, 3])
        let w = rng.tensor([3]), b = rng.tensor([3])
        assertClose(x.instanceNorm(weight: w, bias: b), naiveGroupNorm(x, groups: 3, weight: w.scalars, bias: b.scalars, eps: 1e-5),
                    rtol: 1e-4, atol: 1e-5)
        assertClose(x.instanceNorm(), naiveGroupNorm(x, groups: 3, weight: nil, bias: nil, eps: 1e-5), rtol: 1e-4, atol: 1e-5)
    }

    func testChannelLayerNormNormalisesOverChannelsPerVoxel() {
        var rng = SeededRandom(seed: 12)
        let x = rng.tensor([2, 5, 3, 4, 7], scale: 2)
        let g = rng.tensor([5])
        let y = x.channelLayerNorm(gain: g, eps: 1e-5)
        let (n, c, inner) = (2, 5, 84)
        let xs = x.scalars, gs = g.scalars
        var e = [Float](repeating: 0, count: x.count)
        for b in 0..<n { for i in 0..<inner {
            let v = (0..<c).map { Double(xs[(b * c + $0) * inner + i]) }
            let m = v.reduce(0, +) / Double(c)
            let s2 = v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(c)
            for ch in 0..<c { e[(b * c + ch) * inner + i] = Float((v[ch] - m) / sqrt(s2 + 1e-5) * Double(gs[ch])) }
        }}
        assertClose(y, Tensor(shape: x.shape, data: e), rtol: 1e-4, atol: 1e-5)
    }
}

final class ElementwiseTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testActivationsMatchTheirFormulas() {
        var rng = SeededRandom(seed: 20)
        let x = rng.tensor([3, 4, 5, 7], scale: 6)
        let xs = x.scalars.map(Double.init)
        func t(_ f: (Double) -> Double) -> Tensor { Tensor(shape: x.shape, data: xs.map { Float(f($0)) }) }
        assertClose(x.silu(), t { $0 / (1 + exp(-$0)) }, rtol: 1e-5, atol: 1e-6)
        assertClose(x.gelu(), t { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }, rtol: 1e-5, atol: 1e-6)
        assertClose(x.leakyReLU(), t { $0 >= 0 ? $0 : 0.01 * $0 }, rtol: 1e-6, atol: 0)
        assertClose(x.leakyReLU(negativeSlope: 0.2), t { $0 >= 0 ? $0 : 0.2 * $0 }, rtol: 1e-6, atol: 0)
        let a = Tensor(shape: [4], data: [0.25, -0.5, 2, 0])
        var e = xs
        for i in 0..<e.count where e[i] < 0 { e[i] *= Double(a.scalars[(i / 35) % 4]) }
        assertClose(x.prelu(weight: a), Tensor(shape: x.shape, data: e.map(Float.init)), rtol: 1e-6, atol: 0)
        assertClose(x.prelu(weight: Tensor(shape: [1], data: [0.25])), t { $0 >= 0 ? $0 : 0.25 * $0 }, rtol: 1e-6, atol: 0)
    }

    func testArithmetic() {
        var rng = SeededRandom(seed: 21)
        let a = rng.tensor([5, 3, 7]), b = rng.tensor([5, 3, 7])
        let (av, bv) = (a.scalars, b.scalars)
        assertClose(a + b, Tensor(shape: a.shape, data: zip(av, bv).map { $0 + $1 }), rtol: 0, atol: 0)
        assertClose(a - b, Tensor(shape: a.shape, data: zip(av, bv).map { $0 - $1 }), rtol: 0, atol: 0)
        assertClose(a * b, Tensor(shape: a.shape, data: zip(av, bv).map { $0 * $1 }), rtol: 0, atol: 0)
        assertClose(a * 3, Tensor(shape: a.shape, data: av.map { $0 * 3 }), rtol: 0, atol: 0)
        var c = a
        c.add(b)
        assertClose(c, a + b, rtol: 0, atol: 0)
        XCTAssertEqual(a.scalars, av, "in-place add must not touch the original (copy-on-write)")
        let s = Tensor(shape: [5, 3], data: (0..<15).map(Float.init)), t = Tensor(shape: [3], data: [1, 2, 3])
        let y = a.channelAffine(scale: s, shift: t)
        var e = av
        for i in 0..<e.count { let p = i / 7; e[i] = e[i] * Float(p) + Float(p % 3 + 1) }
        assertClose(y, Tensor(shape: a.shape, data: e), rtol: 1e-6, atol: 1e-6)
    }
}

final class LinearAlgebraTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testLinearMatchesNaive() {
        var rng = SeededRandom(seed: 30)
        let x = rng.tensor([2, 3, 7]), w = rng.tensor([5, 7]), b = rng.tensor([5])
        let (xs, ws, bs) = (x.scalars, w.scalars, b.scalars)
        var e = [Float](repeating: 0, count: 30)
        for r in 0..<6 { for o in 0..<5 {
            e[r * 5 + o] = bs[o] + (0..<7).reduce(Float(0)) { $0 + xs[r * 7 + $1] * ws[o * 7 + $1] }
        }}
        assertClose(x.linear(weight: w, bias: b), Tensor(shape: [2, 3, 5], data: e), rtol: 1e-5, atol: 1e-5)
        assertClose(x.linear(weight: w), Tensor(shape: [2, 3, 5], data: zip(e, (0..<30).map { bs[$0 % 5] }).map { $0 - $1 }),
                    rtol: 1e-5, atol: 1e-5)
    }

    func testBatchedMatmulWithTransposes() {
        var rng = SeededRandom(seed: 31)
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (bt, m, k, n) = (3, 5, 4, 6)
            let a = rng.tensor([2, bt] + (ta ? [k, m] : [m, k])), b = rng.tensor([2, bt] + (tb ? [n, k] : [k, n]))
            let (av, bv) = (a.scalars, b.scalars)
            var e = [Float](repeating: 0, count: 2 * bt * m * n)
            for i in 0..<(2 * bt) { for r in 0..<m { for c in 0..<n {
                var s: Float = 0
                for j in 0..<k {
                    s += av[i * m * k + (ta ? j * m + r : r * k + j)] * bv[i * k * n + (tb ? c * k + j : j * n + c)]
                }
                e[(i * m + r) * n + c] = 0.5 * s
            }}}
            assertClose(Tensor.matmul(a, b, transposeA: ta, transposeB: tb, alpha: 0.5),
                        Tensor(shape: [2, bt, m, n], data: e), rtol: 1e-5, atol: 1e-5, "ta \(ta) tb \(tb)")
        }
        // Rank-2 operand shared by every batch.
        let a = rng.tensor([4, 2, 3]), w = rng.tensor([3, 5])
        let shared = Tensor.matmul(a, w)
        for i in 0..<4 { assertClose(shared.slice(axis: 0, i..<(i + 1)), Tensor.matmul(a.slice(axis: 0, i..<(i + 1)), w.reshaped([1, 3, 5]))) }
    }

    func testSoftmaxAlongEachAxis() {
        var rng = SeededRandom(seed: 32)
        let x = rng.tensor([3, 4, 5], scale: 10)
        let xs = x.scalars
        for axis in [0, 1, 2, -1] {
            let ax = (axis + 3) % 3
            let strides = [20, 5, 1]
            var e = [Float](repeating: 0, count: 60)
            for i in 0..<60 {
                let pos = (i / strides[ax]) % x.shape[ax]
                let start = i - pos * strides[ax]
                let vals = (0..<x.shape[ax]).map { Double(xs[start + $0 * strides[ax]]) }
                let m = vals.max()!
                e[i] = Float(exp(Double(xs[i]) - m) / vals.reduce(0) { $0 + exp($1 - m) })
            }
            assertClose(x.softmax(axis: axis), Tensor(shape: x.shape, data: e), rtol: 1e-5, atol: 1e-6, "axis \(axis)")
        }
    }
}

final class ReshapingTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testConcatAndSliceAlongChannels() {
        var rng = SeededRandom(seed: 40)
        let a = rng.tensor([2, 3, 2, 3, 2]), b = rng.tensor([2, 5, 2, 3, 2])
        let c = Tensor.concat([a, b], axis: 1)
        XCTAssertEqual(c.shape, [2, 8, 2, 3, 2])
        assertClose(c.slice(axis: 1, 0..<3), a, rtol: 0, atol: 0)
        assertClose(c.slice(axis: 1, 3..<8), b, rtol: 0, atol: 0)
        XCTAssertEqual(c.scalars[12 * 3], b.scalars[0])     // image 0, channel 3 starts with b's first element
        XCTAssertEqual(c.scalars[12 * 8], a.scalars[12 * 3]) // image 1 starts with a's image 1
        let parts = c.split(axis: 1, sizes: [3, 5])
        assertClose(parts[0], a, rtol: 0, atol: 0)
        assertClose(parts[1], b, rtol: 0, atol: 0)
        let last = Tensor.concat([a, a], axis: -1)
        XCTAssertEqual(last.shape, [2, 3, 2, 3, 4])
        assertClose(last.slice(axis: 4, 2..<4), a, rtol: 0, atol: 0)
    }
}

final class InterpolationTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testNearestPicksFloorOfScaledIndex() {
        var rng = SeededRandom(seed: 50)
        let x = rng.tensor([1, 2, 96, 5, 7])
        let y = x.interpolateNearest(size: [24, 3, 11])
        let xs = x.scalars, ys = y.scalars
        for c in 0..<2 { for z in 0..<24 { for h in 0..<3 { for w in 0..<11 {
            let (iz, ih, iw) = (z * 4, h * 5 / 3, w * 7 / 11)   // floor(i·in/out)
            XCTAssertEqual(ys[((c * 24 + z) * 3 + h) * 11 + w], xs[((c * 96 + iz) * 5 + ih) * 7 + iw])
        }}}}
    }

    func testTrilinearAlignCornersFalse() {
        var rng = SeededRandom(seed: 51)
        let x = rng.tensor([2, 2, 3, 5, 4])
        let size = [7, 2, 9]
        let y = x.interpolateTrilinear(size: size)
        let xs = x.scalars
        func weights(_ i: Int, _ inS: Int, _ outS: Int) -> [(Int, Double)] {
            let src = max((Double(i) + 0.5) * Double(inS) / Double(outS) - 0.5, 0)
            let i0 = min(Int(src), inS - 1), i1 = min(i0 + 1, inS - 1), l = src - Double(i0)
            return [(i0, 1 - l), (i1, l)]
        }
        var e = [Float](repeating: 0, count: y.count)
        for p in 0..<4 { for z in 0..<7 { for h in 0..<2 { for w in 0..<9 {
            var s = 0.0
            for (iz, a) in weights(z, 3, 7) { for (ih, b) in weights(h, 5, 2) { for (iw, c) in weights(w, 4, 9) {
                s += a * b * c * Double(xs[((p * 3 + iz) * 5 + ih) * 4 + iw])
            }}}
            e[((p * 7 + z) * 2 + h) * 9 + w] = Float(s)
        }}}}
        assertClose(y, Tensor(shape: [2, 2] + size, data: e), rtol: 1e-5, atol: 1e-5)
        // Same size is the identity.
        assertClose(x.interpolateTrilinear(size: [3, 5, 4]), x, rtol: 1e-6, atol: 1e-6)
    }
}

final class GaussianFilterTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testKernelMatchesScipyRadiusAndNormalisation() {
        XCTAssertEqual(Tensor.gaussianKernel1d(sigma: 1).count, 9)       // radius int(4·1 + 0.5) = 4
        XCTAssertEqual(Tensor.gaussianKernel1d(sigma: 0.6).count, 5)     // radius int(2.4 + 0.5) = 2
        XCTAssertEqual(Tensor.gaussianKernel1d(sigma: 2.5).count, 21)    // radius int(10.5) = 10
        XCTAssertEqual(Double(Tensor.gaussianKernel1d(sigma: 1.7).reduce(0, +)), 1, accuracy: 1e-6)
    }

    /// Golden values from scripts/kernels_reference.py (scipy.ndimage.gaussian_filter, mode 'reflect').
    func testMatchesScipyGoldenValues() {
        let x = Tensor(shape: [3, 4, 5], data: (0..<60).map { Float(sin(0.37 * Double($0))) })
        let expected: [[Float]] = [
            [0.4369517, 0.5293090, 0.6563388, 0.7572263, 0.8071831, 0.5354361, 0.4091624, 0.2005532, -0.0160442, -0.1552739, -0.7320737, -0.7548313, -0.7668799, -0.7483831, -0.7215992, -0.1319313, 0.0068859, 0.2221360, 0.4285383, 0.5530052, 0.6691876, 0.6565832, 0.6167745, 0.5523993, 0.4999503, -0.0730794, -0.1815589, -0.3443351, -0.4933963, -0.5796313, -0.6289077, -0.5565114, -0.4269837, -0.2804489, -0.1804688, 0.4197210, 0.4882972, 0.5796802, 0.6479743, 0.6791022, 0.6408482, 0.5281901, 0.3370440, 0.1324732, -0.0019585, -0.6531384, -0.7015829, -0.7551426, -0.7786246, -0.7782857, -0.2808510, -0.1414913, 0.0791759, 0.2966895, 0.4309344, 0.8079380, 0.7795701, 0.7115024, 0.6150951, 0.5407631],
            [0.4631295, 0.5046796, 0.4779238, 0.3864832, 0.2427339, 0.1205275, -0.0106822, -0.1404462, -0.2512015, -0.3279578, -0.3605906, -0.3424220, -0.2779081, -0.1757807, -0.0498622, 0.0112813, 0.1931221, 0.3488247, 0.4573156, 0.5039109, 0.4830882, 0.4953004, 0.4404760, 0.3260352, 0.1674671, 0.0643480, -0.0668046, -0.1889154, -0.2854575, -0.3433642, -0.3542990, -0.3160241, -0.2349769, -0.1221267, 0.0072529, 0.0899107, 0.2612427, 0.3972168, 0.4794294, 0.4967535, 0.5029259, 0.4857970, 0.4029177, 0.2655055, 0.0921583, 0.0081523, -0.1229102, -0.2373373, -0.3196419, -0.3586845, -0.3479185, -0.2895471, -0.1919868, -0.0684420, 0.0643661, 0.1685176, 0.3292978, 0.4455092, 0.5014230, 0.4894716],
        ]
        for (sigma, e) in zip([[0.8, 0, 1.5], [2.0, 0.6, 0]], expected) {
            assertClose(x.gaussianFilter(sigma: sigma), Tensor(shape: [3, 4, 5], data: e), rtol: 1e-5, atol: 2e-6, "sigma \(sigma)")
        }
    }

    func testSeparableFilterMatchesDirect3dSumWithReflect() {
        var rng = SeededRandom(seed: 60)
        let x = rng.tensor([1, 2, 4, 6, 5])
        let sigma = [0.8, 0, 1.5]      // radius 3 on D (larger than half the axis: reflection repeats), none on H, 6 on W
        let y = x.gaussianFilter(sigma: sigma)
        func reflect(_ i: Int, _ n: Int) -> Int {
            var j = i % (2 * n); if j < 0 { j += 2 * n }
            return j < n ? j : 2 * n - 1 - j
        }
        func kernel(_ s: Double) -> [Double] {
            if s == 0 { return [1] }
            let r = Int(4 * s + 0.5)
            let w = (-r...r).map { exp(-Double($0 * $0) / (2 * s * s)) }
            let t = w.reduce(0, +)
            return w.map { $0 / t }
        }
        let kd = kernel(sigma[0]), kh = kernel(sigma[1]), kw = kernel(sigma[2])
        let (d, h, w) = (4, 6, 5), xs = x.scalars
        var e = [Float](repeating: 0, count: x.count)
        for c in 0..<2 { for z in 0..<d { for yy in 0..<h { for xx in 0..<w {
            var s = 0.0
            for (a, wa) in kd.enumerated() { for (b, wb) in kh.enumerated() { for (cc, wc) in kw.enumerated() {
                let iz = reflect(z + a - kd.count / 2, d), iy = reflect(yy + b - kh.count / 2, h)
                let ix = reflect(xx + cc - kw.count / 2, w)
                s += wa * wb * wc * Double(xs[((c * d + iz) * h + iy) * w + ix])
            }}}
            e[((c * d + z) * h + yy) * w + xx] = Float(s)
        }}}}
        assertClose(y, Tensor(shape: x.shape, data: e), rtol: 1e-5, atol: 1e-5)
    }
}
