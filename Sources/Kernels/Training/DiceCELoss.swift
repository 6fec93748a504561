import Foundation

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
    public func valueAndGradient(logits: Tensor, labels: [UInt8]) -> (Float, Tensor) {
        let (n, c) = (logits.shape[0], logits.shape[1]), inner = logits.count / (n * c)
        precondition(labels.count == n * inner, "DiceCE: \(labels.count) labels for logits \(logits.shape)")
        let p = Tape.softmaxChannels(logits)
        var dp = Tensor(zeros: logits.shape)    // d loss / d probabilities (Dice part)
        var grad = Tensor(uninitialized: logits.shape)
        var dice = 0.0, ce = 0.0
        let firstClass = includeBackground ? 0 : 1
        let diceTerms = Double(n * (c - firstClass))
        p.withUnsafeBufferPointer { pp in dp.withUnsafeMutableBufferPointer { dpp in
            for b in 0..<n {
                let lab = b * inner
                for ch in 0..<c {
                    let pc = pp.baseAddress! + (b * c + ch) * inner
                    // Cross-entropy: −log p[label].
                    for i in 0..<inner where Int(labels[lab + i]) == ch { ce -= Double(logf(max(pc[i], .leastNormalMagnitude))) }
                    guard ch >= firstClass else { continue }
                    var inter = 0.0, pSq = 0.0, gSq = 0.0
                    for i in 0..<inner {
                        let pv = Double(pc[i])
                        pSq += pv * pv
                        if Int(labels[lab + i]) == ch { inter += pv; gSq += 1 }
                    }
                    let den = pSq + gSq + smoothDenominator
                    let num = 2 * inter + smoothNumerator
                    dice += 1 - num / den
                    // d(1 − num/den)/dp = −2g/den + num·2p/den²
                    let a = -2 / den / diceTerms * lambdaDice, bq = 2 * num / (den * den) / diceTerms * lambdaDice
                    let dc = dpp.baseAddress! + (b * c + ch) * inner
                    for i in 0..<inner {
                        dc[i] = Float(bq * Double(pc[i]) + (Int(labels[lab + i]) == ch ? a : 0))
                    }
                }
            }
        }}
        let ceScale = Float(lambdaCE / Double(n * inner))
        // Through the softmax: dz = p·(dp − Σ_c p·dp); plus the CE part (p − onehot)/(B·S).
        p.withUnsafeBufferPointer { pp in dp.withUnsafeBufferPointer { dpp in grad.withUnsafeMutableBufferPointer { gp in
            for b in 0..<n {
                for i in 0..<inner {
                    var dot: Float = 0
                    for ch in 0..<c { let k = (b * c + ch) * inner + i; dot += pp[k] * dpp[k] }
                    let label = Int(labels[b * inner + i])
                    for ch in 0..<c {
                        let k = (b * c + ch) * inner + i
                        gp[k] = pp[k] * (dpp[k] - dot) + ceScale * (pp[k] - (ch == label ? 1 : 0))
                    }
                }
            }
        }}}
        let value = lambdaDice * dice / diceTerms + lambdaCE * ce / Double(n * inner)
        return (Float(value), grad)
    }
}
