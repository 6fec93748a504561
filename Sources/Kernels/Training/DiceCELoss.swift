import Foundation
import Dispatch

/// MONAI's `DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0,
/// smooth_dr=1e-6)` as the reference trains with it (difftumor.md §5), with MONAI's defaults
/// otherwise: include_background=True, batch=False (one Dice per (sample, class), then the
/// mean), lambda_dice = lambda_ce = 1, and cross-entropy averaged over every voxel.
///
/// Dice term: 1 − (2·Σ p·g + smooth_nr) / (Σ p² + Σ g² + smooth_dr), p = softmax(logits).
public struct DiceCELoss: Sendable {
    public var smoothNumerator: Double = 0
    public var smoothDenominator: Double = 1e-6
    public var includeBackground: Bool = true
    public var lambdaDice: Double = 1
    public var lambdaCE: Double = 1

    public init() {}

    /// The loss and its gradient with respect to the logits ([B, C, spatial…]); `labels` holds
    /// one class index per voxel ([B, spatial…], values < C).
    ///
    /// Two fused SIMD passes over the voxels, split between `KernelContext.threads`: (1) softmax
    /// (`NetworkOps.fastExp`), cross-entropy as log Σ e^(z − max) + max − z_label (log-softmax, as
    /// torch computes it) and the Dice sums Σ p·g, Σ p², Σ g per (sample, class), keeping p in
    /// the gradient buffer; (2) the gradient through the softmax, in place.
    public func valueAndGradient(logits: Tensor, labels: [UInt8]) -> (Float, Tensor) {
        let (n, c) = (logits.shape[0], logits.shape[1]), inner = logits.count / (n * c)
        precondition(labels.count == n * inner, "DiceCE: \(labels.count) labels for logits \(logits.shape)")
        precondition(c <= DiceCELoss.maxClasses, "DiceCE: \(c) classes (at most \(DiceCELoss.maxClasses))")
        var grad = Tensor(uninitialized: logits.shape)   // p after pass 1, the gradient after pass 2
        let blocks = (inner + 7) / 8
        let workers = max(1, min(KernelContext.threads, blocks / 512))
        // Per (worker, sample): c × (Σ p·g, Σ p², Σ g) and the cross-entropy sum.
        let stride = 3 * c + 1
        var partial = [Double](repeating: 0, count: workers * n * stride)
        logits.withUnsafeBufferPointer { zp in grad.withUnsafeMutableBufferPointer { gp in
            labels.withUnsafeBufferPointer { lp in partial.withUnsafeMutableBufferPointer { pp in
                let z = zp.baseAddress!, pb = gp.baseAddress!, lab = lp.baseAddress!, part = pp.baseAddress!
                DiceCELoss.forEachRange(blocks, workers) { w, range in
                    for b in 0..<n {
                        DiceCELoss.softmaxPass(z + b * c * inner, labels: lab + b * inner, probabilities: pb + b * c * inner,
                                               classes: c, inner: inner, blocks: range, sums: part + (w * n + b) * stride)
                    }
                }
            }}
        }}
        let firstClass = includeBackground ? 0 : 1
        let diceTerms = Double(n * (c - firstClass))
        var dice = 0.0, ce = 0.0
        // d(1 − num/den)/dp = −2g/den + num·2p/den²: per (sample, class) coefficients of g and p.
        var coefG = [Float](repeating: 0, count: n * c), coefP = coefG
        for b in 0..<n {
            var sums = [Double](repeating: 0, count: stride)
            for w in 0..<workers { for k in 0..<stride { sums[k] += partial[(w * n + b) * stride + k] } }
            ce += sums[3 * c]
            for ch in firstClass..<c {
                let inter = sums[3 * ch], pSq = sums[3 * ch + 1], gSq = sums[3 * ch + 2]
                let den = pSq + gSq + smoothDenominator
                let num = 2 * inter + smoothNumerator
                dice += 1 - num / den
                coefG[b * c + ch] = Float(-2 / den / diceTerms * lambdaDice)
                coefP[b * c + ch] = Float(2 * num / (den * den) / diceTerms * lambdaDice)
            }
        }
        let ceScale = Float(lambdaCE / Double(n * inner))
        grad.withUnsafeMutableBufferPointer { gp in labels.withUnsafeBufferPointer { lp in
            let pb = gp.baseAddress!, lab = lp.baseAddress!
            DiceCELoss.forEachRange(blocks, workers) { _, range in
                for b in 0..<n {
                    DiceCELoss.gradientPass(pb + b * c * inner, labels: lab + b * inner, classes: c, inner: inner, blocks: range,
                                            coefG: Array(coefG[(b * c)..<(b * c + c)]), coefP: Array(coefP[(b * c)..<(b * c + c)]),
                                            ceScale: ceScale)
                }
            }
        }}
        let value = lambdaDice * dice / diceTerms + lambdaCE * ce / Double(n * inner)
        return (Float(value), grad)
    }

    /// Classes the fused passes handle (the reference has 3).
    public static let maxClasses = 16

    typealias V8 = SIMD8<Float>

    static func forEachRange(_ count: Int, _ workers: Int, _ body: (Int, Range<Int>) -> Void) {
        if workers <= 1 { body(0, 0..<count); return }
        DispatchQueue.concurrentPerform(iterations: workers) { w in body(w, (count * w / workers)..<(count * (w + 1) / workers)) }
    }

    /// Loads voxels i..<i+8 (fewer at the end: `valid`, the rest 0).
    @inline(__always) static func load(_ p: UnsafePointer<Float>, _ valid: Int) -> V8 {
        if valid == 8 { return UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
        var v = V8()
        for k in 0..<valid { v[k] = p[k] }
        return v
    }

    @inline(__always) static func store(_ p: UnsafeMutablePointer<Float>, _ v: V8, _ valid: Int) {
        if valid == 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self); return }
        for k in 0..<valid { p[k] = v[k] }
    }

    /// Labels of voxels i..<i+8 as floats (255, matching no class, past the end).
    @inline(__always) static func loadLabels(_ p: UnsafePointer<UInt8>, _ valid: Int) -> V8 {
        var v = V8(repeating: 255)
        for k in 0..<valid { v[k] = Float(p[k]) }
        return v
    }

    /// Natural log for x ≥ 1e-30 (Cephes `logf`: exponent and a degree-8 polynomial of the mantissa).
    @inline(__always) static func log(_ x: V8) -> V8 {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        var e = V8((bits &>> 23) &- 126)
        var m = unsafeBitCast((bits & 0x7f_ffff) | 0x3f00_0000, to: V8.self)   // [0.5, 1)
        let small = m .< 0.707106781186547524
        e = e.replacing(with: e - 1, where: small)
        m = m.replacing(with: m + m - 1, where: small)
        m = m.replacing(with: m - 1, where: .!small)
        let z = m * m
        var y = V8(repeating: 7.0376836292E-2)
        y = y * m - 1.1514610310E-1
        y = y * m + 1.1676998740E-1
        y = y * m - 1.2420140846E-1
        y = y * m + 1.4249322787E-1
        y = y * m - 1.6668057665E-1
        y = y * m + 2.0000714765E-1
        y = y * m - 2.4999993993E-1
        y = y * m + 3.3333331174E-1
        y = y * m * z
        y = y - 2.12194440e-4 * e
        y = y - 0.5 * z
        return m + y + 0.693359375 * e
    }

    /// Pass 1 for one sample, voxel blocks `blocks` (8 voxels each): p = softmax(z) into
    /// `probabilities`; adds Σ p·g, Σ p², Σ g per class and the cross-entropy sum to `sums`.
    static func softmaxPass(_ z: UnsafePointer<Float>, labels: UnsafePointer<UInt8>, probabilities p: UnsafeMutablePointer<Float>,
                            classes c: Int, inner: Int, blocks: Range<Int>, sums: UnsafeMutablePointer<Double>) {
        var inter = [V8](repeating: V8(), count: c), pSq = inter, gSum = inter
        var ce = V8()
        var e = [V8](repeating: V8(), count: c)
        var counter = 0
        func flush() {
            for ch in 0..<c {
                sums[3 * ch] += Double(inter[ch].sum()); sums[3 * ch + 1] += Double(pSq[ch].sum())
                sums[3 * ch + 2] += Double(gSum[ch].sum())
                inter[ch] = V8(); pSq[ch] = V8(); gSum[ch] = V8()
            }
            sums[3 * c] += Double(ce.sum()); ce = V8()
        }
        for blk in blocks {
            let i = blk * 8, valid = min(8, inner - i)
            let lab = loadLabels(labels + i, valid)
            var m = load(z + i, valid)
            for ch in 1..<max(1, c) { let v = load(z + ch * inner + i, valid); m = m.replacing(with: v, where: v .> m) }
            var s = V8(), zl = V8()
            for ch in 0..<c {
                let v = load(z + ch * inner + i, valid)
                e[ch] = NetworkOps.fastExp(v - m)
                s += e[ch]
                zl = zl.replacing(with: v, where: lab .== Float(ch))
            }
            let r = 1 / s
            let mask = V8(repeating: 1).replacing(with: 0, where: lab .== 255)   // 0 on the padded lanes
            ce += (log(s) + m - zl) * mask
            for ch in 0..<c {
                let pv = e[ch] * r * mask
                store(p + ch * inner + i, pv, valid)
                let g = V8().replacing(with: 1, where: lab .== Float(ch))
                inter[ch] += pv * g; pSq[ch] += pv * pv; gSum[ch] += g
            }
            counter += 1
            if counter == 1024 { flush(); counter = 0 }   // keeps the Float partial sums short
        }
        flush()
    }

    /// Pass 2 for one sample, in place: with dp = coefP·p + coefG·g (the Dice part),
    /// dz = p·(dp − Σ_c p·dp) + ceScale·(p − g).
    static func gradientPass(_ p: UnsafeMutablePointer<Float>, labels: UnsafePointer<UInt8>, classes c: Int, inner: Int,
                             blocks: Range<Int>, coefG: [Float], coefP: [Float], ceScale: Float) {
        var pv = [V8](repeating: V8(), count: c), dp = pv
        for blk in blocks {
            let i = blk * 8, valid = min(8, inner - i)
            let lab = loadLabels(labels + i, valid)
            var dot = V8()
            for ch in 0..<c {
                pv[ch] = load(p + ch * inner + i, valid)
                let g = V8().replacing(with: 1, where: lab .== Float(ch))
                dp[ch] = coefP[ch] * pv[ch] + coefG[ch] * g
                dot += pv[ch] * dp[ch]
            }
            for ch in 0..<c {
                let g = V8().replacing(with: 1, where: lab .== Float(ch))
                store(p + ch * inner + i, pv[ch] * (dp[ch] - dot) + ceScale * (pv[ch] - g), valid)
            }
        }
    }
}
