import XCTest
import Foundation
import Kernels

/// Every backward rule against central finite differences of the forward op: the scalar is
/// Σ r·op(inputs) with a fixed random r, so each rule is checked for a general output gradient.
final class AutogradTests: XCTestCase {
    func testConv3dGradients() {
        for avx in bothPaths() { KernelContext.useAVX512 = avx
        for (stride, padding, k) in [([1, 1, 1], [1, 1, 1], 3), ([2, 2, 2], [1, 1, 1], 3), ([1, 2, 2], [1, 0, 1], 3), ([1, 1, 1], [0, 0, 0], 1)] {
            gradCheck(inputs: [random([2, 3, 5, 6, 7], seed: 1), random([4, 3, k, k, k], seed: 2), random([4], seed: 3)],
                      "conv3d stride \(stride) padding \(padding) k \(k)") { t, v in
                t.conv3d(v[0], weight: v[1], bias: v[2], stride: stride, padding: padding)
            }
        }
        }
    }

    func testConvTranspose3dGradients() {
        for avx in bothPaths() { KernelContext.useAVX512 = avx
        for (stride, padding, outPad) in [([2, 2, 2], [1, 1, 1], [1, 1, 1]), ([1, 1, 1], [1, 1, 1], [0, 0, 0]), ([2, 1, 2], [0, 1, 1], [1, 0, 0])] {
            gradCheck(inputs: [random([2, 3, 3, 4, 5], seed: 4), random([3, 2, 3, 3, 3], seed: 5), random([2], seed: 6)],
                      "convTranspose3d stride \(stride)") { t, v in
                t.convTranspose3d(v[0], weight: v[1], bias: v[2], stride: stride, padding: padding, outputPadding: outPad)
            }
        }
        }
    }

    /// The direct AVX-512 weight gradient (`ConvGeometry.weightGradient` on `KernelsAVX512.ConvWeightGradient`) equals the
    /// im2col + sgemm one on odd sizes, strides (also larger than the kernel), paddings, non-cubic
    /// kernels, a batch of 2, every tile shape (output channels 1, 3, 5, 8, 13) and several
    /// position chunks per worker.
    func testDirectWeightGradientMatchesGEMM() throws {
        guard CPUFeatures.hasAVX512F else { throw XCTSkip("no AVX-512F on this CPU") }
        let saved = (KernelContext.useAVX512, ConvGeometry.directWeightGradientChunk, ConvGeometry.directWeightGradientMinPositions)
        defer {
            KernelContext.useAVX512 = saved.0; ConvGeometry.directWeightGradientChunk = saved.1
            ConvGeometry.directWeightGradientMinPositions = saved.2
        }
        KernelContext.useAVX512 = true
        ConvGeometry.directWeightGradientMinPositions = 0
        let cases: [(cin: Int, cout: Int, kernel: [Int], stride: [Int], padding: [Int], size: [Int])] = [
            (3, 5, [3, 3, 3], [1, 1, 1], [1, 1, 1], [7, 9, 11]),
            (2, 13, [3, 3, 3], [2, 2, 2], [1, 1, 1], [9, 8, 13]),
            (4, 3, [3, 3, 3], [1, 2, 1], [0, 1, 2], [6, 11, 7]),
            (1, 8, [3, 2, 1], [2, 1, 3], [1, 0, 0], [10, 7, 9]),
            (5, 1, [1, 1, 1], [1, 1, 1], [0, 0, 0], [5, 6, 7]),
            (3, 16, [3, 3, 3], [2, 2, 2], [1, 1, 1], [17, 15, 19]),
            (6, 4, [2, 3, 3], [3, 2, 2], [1, 1, 0], [11, 9, 10]),
        ]
        for (i, c) in cases.enumerated() {
            let geo = ConvGeometry(inChannels: c.cin, outChannels: c.cout, kernel: c.kernel, stride: c.stride,
                                   padding: c.padding, inSize: c.size)
            let x = random([2, c.cin] + c.size, seed: 40 + UInt64(i)), dy = random([2, c.cout] + geo.outSize, seed: 60 + UInt64(i))
            let expected = geo.gemmWeightGradient(input: x, gradOutput: dy)
            for chunk in [4096, 48] {
                ConvGeometry.directWeightGradientChunk = chunk
                for threads in [1, 2] {
                    let savedThreads = KernelContext.threads
                    KernelContext.threads = threads
                    let dw = geo.weightGradient(input: x, gradOutput: dy)
                    KernelContext.threads = savedThreads
                    XCTAssertEqual(dw.shape, expected.shape)
                    assertClose(dw.scalars, expected.scalars, atol: 1e-4, rtol: 1e-4,
                                "dW \(geo.summary) padding \(c.padding) chunk \(chunk) threads \(threads)")
                }
            }
        }
        // The portable switch really takes the other path.
        ConvGeometry.useDirectWeightGradient = false
        defer { ConvGeometry.useDirectWeightGradient = true }
        let geo = ConvGeometry(inChannels: 2, outChannels: 3, kernel: [3, 3, 3], stride: [1, 1, 1], padding: [1, 1, 1], inSize: [4, 5, 6])
        let x = random([1, 2, 4, 5, 6], seed: 80), dy = random([1, 3, 4, 5, 6], seed: 81)
        XCTAssertEqual(geo.weightGradient(input: x, gradOutput: dy).scalars, geo.gemmWeightGradient(input: x, gradOutput: dy).scalars)
    }

    /// The input gradient through `Tensor.convTranspose3d` and (stride 1) through the flipped
    /// kernel's `conv3d` agree with each other and with the weight gradient's adjoint identity
    /// ⟨dY, conv(x)⟩ = ⟨dX, x⟩ = ⟨dW, W⟩ (the convolution is bilinear in x and W).
    func testConvProductVariantsAgree() {
        defer { ConvGeometry.useKernelsTransposedGradient = false }
        for (stride, padding, k) in [([1, 1, 1], [1, 1, 1], 3), ([1, 1, 1], [0, 0, 0], 3), ([2, 2, 2], [1, 1, 1], 3),
                                     ([1, 2, 2], [1, 0, 1], 3), ([1, 1, 1], [2, 1, 0], 3), ([1, 1, 1], [0, 0, 0], 1)] {
            let geo = ConvGeometry(inChannels: 3, outChannels: 5, kernel: [k, k, k], stride: stride, padding: padding, inSize: [6, 7, 5])
            let x = random([2, 3, 6, 7, 5], seed: 21), w = random([5, 3, k, k, k], seed: 22)
            let dy = random([2, 5] + geo.outSize, seed: 23)
            var dxs: [Tensor] = []
            for transposed in [false, true] {
                ConvGeometry.useKernelsTransposedGradient = transposed
                dxs.append(geo.inputGradient(weight: w, gradOutput: dy))
            }
            assertClose(dxs[1].scalars, dxs[0].scalars, atol: 1e-4, rtol: 1e-4, "dX \(geo.summary) \(padding)")
            XCTAssertEqual(dxs[0].shape, x.shape)
            let y = geo.forward(x, weight: w, bias: nil), dw = geo.weightGradient(input: x, gradOutput: dy)
            func dot(_ a: Tensor, _ b: Tensor) -> Double { zip(a.scalars, b.scalars).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
            let ref = dot(dy, y)
            XCTAssertEqual(dot(dxs[0], x), ref, accuracy: 1e-3 * max(1, abs(ref)), "⟨dX, x⟩ \(geo.summary)")
            XCTAssertEqual(dot(dw, w), ref, accuracy: 1e-3 * max(1, abs(ref)), "⟨dW, W⟩ \(geo.summary)")
        }
    }

    /// Forward values against direct loops (the gradient checks only prove self-consistency).
    func testConvForwardsMatchDirectLoops() {
        let x = random([1, 2, 4, 5, 6], seed: 7), w = random([3, 2, 3, 3, 3], seed: 8)
        let tape = Tape()
        let y = tape[tape.conv3d(tape.constant(x), weight: tape.constant(w), bias: nil, stride: [2, 1, 2], padding: [1, 1, 1])]
        XCTAssertEqual(y.shape, [1, 3, 2, 5, 3])
        var expected = [Float](repeating: 0, count: y.count)
        for co in 0..<3 { for od in 0..<2 { for oh in 0..<5 { for ow in 0..<3 {
            var s: Float = 0
            for ci in 0..<2 { for kd in 0..<3 { for kh in 0..<3 { for kw in 0..<3 {
                let id = od * 2 - 1 + kd, ih = oh - 1 + kh, iw = ow * 2 - 1 + kw
                guard id >= 0, id < 4, ih >= 0, ih < 5, iw >= 0, iw < 6 else { continue }
                s += x[flat: ((ci * 4 + id) * 5 + ih) * 6 + iw] * w[flat: ((co * 2 + ci) * 3 + kd) * 9 + kh * 3 + kw]
            }}}}
            expected[((co * 2 + od) * 5 + oh) * 3 + ow] = s
        }}}}
        assertClose(y.scalars, expected, atol: 1e-5)

        // ConvTranspose3d by scatter: out[co, i·s − p + k] += x[ci, i]·w[ci, co, k].
        let xt = random([1, 2, 3, 2, 3], seed: 9), wt = random([2, 3, 3, 3, 3], seed: 10)
        let yt = tape[tape.convTranspose3d(tape.constant(xt), weight: tape.constant(wt), bias: nil, stride: [2, 2, 2],
                                           padding: [1, 1, 1], outputPadding: [1, 1, 1])]
        XCTAssertEqual(yt.shape, [1, 3, 6, 4, 6])
        var scatter = [Float](repeating: 0, count: yt.count)
        for ci in 0..<2 { for i in 0..<3 { for j in 0..<2 { for l in 0..<3 { for co in 0..<3 {
            for kd in 0..<3 { for kh in 0..<3 { for kw in 0..<3 {
                let od = i * 2 - 1 + kd, oh = j * 2 - 1 + kh, ow = l * 2 - 1 + kw
                guard od >= 0, od < 6, oh >= 0, oh < 4, ow >= 0, ow < 6 else { continue }
                scatter[((co * 6 + od) * 4 + oh) * 6 + ow] += xt[flat: ((ci * 3 + i) * 2 + j) * 3 + l]
                    * wt[flat: ((ci * 3 + co) * 3 + kd) * 9 + kh * 3 + kw]
            }}}
        }}}}}
        assertClose(yt.scalars, scatter, atol: 1e-5)
    }

    func testInstanceNormGradients() {
        gradCheck(inputs: [random([2, 3, 3, 4, 2], seed: 11, scale: 2)], "instanceNorm", eps: 1e-2, rtol: 3e-2) { t, v in
            t.instanceNorm(v[0])
        }
        // Forward: zero mean, unit (biased) variance per (n, c).
        let tape = Tape()
        let y = tape[tape.instanceNorm(tape.constant(random([1, 2, 4, 4, 4], seed: 12, scale: 3)))]
        let first = Array(y.scalars[0..<64])
        let mean = first.reduce(0, +) / 64, variance = first.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 64
        XCTAssertEqual(mean, 0, accuracy: 1e-5)
        XCTAssertEqual(variance, 1, accuracy: 1e-3)
    }

    func testActivationGradients() {
        // Inputs kept away from the kink at 0, where finite differences are not defined.
        var x = random([2, 3, 2, 3, 4], seed: 13)
        x.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] += p[i] >= 0 ? 0.1 : -0.1 } }
        gradCheck(inputs: [x, Tensor(shape: [1], data: [0.3])], "prelu") { t, v in t.prelu(v[0], weight: v[1]) }
        gradCheck(inputs: [x, Tensor(shape: [3], data: [0.3, -0.2, 0.5])], "prelu per channel") { t, v in t.prelu(v[0], weight: v[1]) }
        gradCheck(inputs: [x], "leakyReLU") { t, v in t.leakyReLU(v[0], slope: 0.01) }
        gradCheck(inputs: [x], "softmax", eps: 1e-2, rtol: 3e-2) { t, v in t.softmax(v[0]) }
    }

    func testAddAndConcatGradients() {
        let a = random([2, 2, 3, 2, 2], seed: 14), b = random([2, 2, 3, 2, 2], seed: 15), c = random([2, 3, 3, 2, 2], seed: 16)
        gradCheck(inputs: [a, b, c], "add+concat") { t, v in t.concat([t.add(v[0], v[1]), v[2], v[0]]) }
    }

    func testDiceCEMatchesMONAI() {
        let shape = DiceCEExpected.shape
        let n = Tensor.elementCount(shape)
        let logits = Tensor(shape: shape, data: (0..<n).map { Float(2 * sin(0.31 * Double($0))) })
        let labels: [UInt8] = (0..<(n / 3)).map { (i: Int) -> UInt8 in UInt8((i * 7 + i / 5) % 3) }
        let (value, grad) = DiceCELoss().valueAndGradient(logits: logits, labels: labels)
        XCTAssertEqual(Double(value), DiceCEExpected.loss, accuracy: 1e-5)
        assertClose(grad.scalars, DiceCEExpected.gradient, atol: 1e-6, rtol: 1e-4)
        // And through the tape, against finite differences.
        gradCheck(inputs: [logits], "diceCE", eps: 1e-2, rtol: 3e-2, weighted: false) { t, v in
            t.diceCELoss(logits: v[0], labels: labels)
        }
    }

    /// The fused SIMD DiceCE (two workers, 8-voxel blocks with a ragged tail, batch 2, without the
    /// background class too) against a plain Double evaluation of the same formulas.
    func testFusedDiceCEMatchesPlainLoops() {
        let savedThreads = KernelContext.threads
        defer { KernelContext.threads = savedThreads }
        KernelContext.threads = 2
        let (n, c, inner) = (2, 3, 23 * 21 * 19)
        let logits = random([n, c, 23, 21, 19], seed: 90, scale: 4)
        var rng = SplitMix64(seed: 91)
        let labels = (0..<(n * inner)).map { _ in UInt8(rng.next() % 3) }
        for includeBackground in [true, false] {
            var loss = DiceCELoss()
            loss.includeBackground = includeBackground
            let (value, grad) = loss.valueAndGradient(logits: logits, labels: labels)
            let z = logits.scalars.map(Double.init)
            var p = [Double](repeating: 0, count: z.count), ce = 0.0
            for b in 0..<n { for i in 0..<inner {
                let idx = (0..<c).map { (b * c + $0) * inner + i }
                let m = idx.map { z[$0] }.max()!, e = idx.map { Foundation.exp(z[$0] - m) }, s = e.reduce(0, +)
                for (k, j) in idx.enumerated() { p[j] = e[k] / s }
                ce -= Foundation.log(p[idx[Int(labels[b * inner + i])]])
            }}
            let first = includeBackground ? 0 : 1, terms = Double(n * (c - first))
            var dice = 0.0, dp = [Double](repeating: 0, count: z.count)
            for b in 0..<n { for ch in first..<c {
                var inter = 0.0, pSq = 0.0, gSq = 0.0
                for i in 0..<inner {
                    let pv = p[(b * c + ch) * inner + i], g = labels[b * inner + i] == ch ? 1.0 : 0
                    inter += pv * g; pSq += pv * pv; gSq += g
                }
                let den = pSq + gSq + 1e-6
                dice += 1 - 2 * inter / den
                for i in 0..<inner {
                    let k = (b * c + ch) * inner + i, g = labels[b * inner + i] == ch ? 1.0 : 0
                    dp[k] = (-2 * g / den + 2 * inter * 2 * p[k] / (den * den)) / terms
                }
            }}
            XCTAssertEqual(Double(value), dice / terms + ce / Double(n * inner), accuracy: 1e-5)
            var expected = [Float](repeating: 0, count: z.count)
            for b in 0..<n { for i in 0..<inner {
                let idx = (0..<c).map { (b * c + $0) * inner + i }
                let dot = idx.reduce(0.0) { $0 + p[$1] * dp[$1] }
                for (ch, k) in idx.enumerated() {
                    let g = Int(labels[b * inner + i]) == ch ? 1.0 : 0
                    expected[k] = Float(p[k] * (dp[k] - dot) + (p[k] - g) / Double(n * inner))
                }
            }}
            assertClose(grad.scalars, expected, atol: 1e-8, rtol: 1e-3, "DiceCE gradient, background \(includeBackground)")
        }
    }

    func testChainedGradientsAccumulate() {
        // A value used twice (x feeds both the conv and the residual add) sums its gradients.
        gradCheck(inputs: [random([1, 2, 4, 4, 4], seed: 17), random([2, 2, 3, 3, 3], seed: 18)], "residual") { t, v in
            t.add(t.prelu(t.instanceNorm(t.conv3d(v[0], weight: v[1], bias: nil, stride: [1, 1, 1], padding: [1, 1, 1])),
                          weight: t.constant(Tensor(shape: [1], data: [0.25]))), v[0])
        }
    }
}

// MARK: - Helpers

/// The convolution paths to check: portable (`KernelContext.useAVX512 = false`) and, on an AVX-512
/// CPU, the direct kernels (the direct weight gradient also on the small test sizes); the settings
/// are restored when the test ends.
extension XCTestCase {
    func bothPaths() -> [Bool] {
        let saved = (KernelContext.useAVX512, ConvGeometry.directWeightGradientMinPositions)
        addTeardownBlock { KernelContext.useAVX512 = saved.0; ConvGeometry.directWeightGradientMinPositions = saved.1 }
        ConvGeometry.directWeightGradientMinPositions = 0
        return CPUFeatures.hasAVX512F ? [false, true] : [false]
    }
}

func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var rng = SplitMix64(seed: seed)
    return Tensor(shape: shape, data: (0..<Tensor.elementCount(shape)).map { _ in Float(rng.nextUnit() * 2 - 1) * scale })
}

func assertClose(_ a: [Float], _ b: [Float], atol: Float, rtol: Float = 0, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "count \(message)", file: file, line: line)
    guard a.count == b.count else { return }
    var worst = 0, worstExcess: Float = -1
    for i in 0..<a.count {
        let excess = abs(a[i] - b[i]) - (atol + rtol * abs(b[i]))
        if excess > worstExcess { worstExcess = excess; worst = i }
    }
    XCTAssertLessThanOrEqual(worstExcess, 0, "\(message): element \(worst): \(a[worst]) vs \(b[worst])", file: file, line: line)
}

/// Checks the tape's gradients of Σ r·f(inputs) (or f itself when `weighted` is false and f is
/// a scalar) with respect to every input against central differences, on up to 24 elements per
/// input. `atol` covers the Float32 noise of the differences (gradients that are exactly 0).
func gradCheck(inputs: [Tensor], _ name: String, eps: Float = 5e-3, rtol: Float = 1e-2, atol: Float = 1e-4, weighted: Bool = true,
               file: StaticString = #filePath, line: UInt = #line, _ f: (Tape, [Variable]) -> Variable) {
    let tape = Tape()
    let vars = inputs.map { tape.parameter($0) }
    let out = f(tape, vars)
    let r = weighted ? random(tape[out].shape, seed: 99) : Tensor(shape: tape[out].shape, repeating: 1)
    let grads = tape.gradients(of: out, seed: r)
    func objective(_ xs: [Tensor]) -> Double {
        let t = Tape(recording: false)
        let y = t[f(t, xs.map { t.constant($0) })]
        var s = 0.0
        for i in 0..<y.count { s += Double(y[flat: i]) * Double(r[flat: i]) }
        return s
    }
    for (k, x) in inputs.enumerated() {
        guard let g = grads[vars[k]] else { XCTFail("\(name): no gradient for input \(k)", file: file, line: line); continue }
        XCTAssertEqual(g.shape, x.shape, "\(name): gradient shape of input \(k)", file: file, line: line)
        var rng = SplitMix64(seed: UInt64(k + 1))
        let picks = x.count <= 24 ? Array(0..<x.count) : (0..<24).map { _ in Int(rng.next() % UInt64(x.count)) }
        let scale = max(1e-3, g.scalars.map { abs($0) }.max() ?? 0)
        for i in picks {
            var plus = inputs, minus = inputs
            plus[k][flat: i] += eps
            minus[k][flat: i] -= eps
            let numeric = Float((objective(plus) - objective(minus)) / Double(2 * eps))
            let analytic = g[flat: i]
            XCTAssertLessThanOrEqual(abs(numeric - analytic), rtol * max(abs(numeric), 0.05 * scale) + atol,
                                     "\(name): input \(k) element \(i): analytic \(analytic), numeric \(numeric)",
                                     file: file, line: line)
        }
    }
}
