import Foundation

/// PyTorch's `AdamW` (decoupled weight decay, no amsgrad): for each step t (from 1),
/// p ← p − lr·wd·p; m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε).
/// The reference trains with lr 4e-4 and weight decay 1e-5.
public struct AdamW {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float
    /// Steps taken so far.
    public var step: Int = 0
    /// First and second moments by parameter name.
    public var exp: [String: Tensor] = [:]
    public var expSquared: [String: Tensor] = [:]

    public init(weightDecay: Float = 1e-5) { self.weightDecay = weightDecay }

    /// One update of every parameter that has a gradient.
    public mutating func update(parameters: inout [String: Tensor], gradients: [String: Tensor], lr: Float) {
        step += 1
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        for name in gradients.keys.sorted() {
            // Taken out of the dictionaries so that the tensors are uniquely referenced and updated
            // in place (no copy-on-write copy of every parameter and moment per step).
            guard let g = gradients[name], var p = parameters.removeValue(forKey: name) else { continue }
            precondition(p.shape == g.shape, "AdamW: parameter \(name) \(p.shape) and gradient \(g.shape) differ")
            var m = exp.removeValue(forKey: name) ?? Tensor(zeros: p.shape)
            var v = expSquared.removeValue(forKey: name) ?? Tensor(zeros: p.shape)
            let (b1, b2, e, decay) = (beta1, beta2, eps, 1 - lr * weightDecay)
            g.withUnsafeBufferPointer { gp in m.withUnsafeMutableBufferPointer { mp in
                v.withUnsafeMutableBufferPointer { vp in p.withUnsafeMutableBufferPointer { pp in
                    let (gb, mb, vb, pb) = (gp.baseAddress!, mp.baseAddress!, vp.baseAddress!, pp.baseAddress!)
                    AutogradParallel.forRanges(pp.count) { lo, hi in
                        for i in lo..<hi {
                            pb[i] *= decay
                            mb[i] = b1 * mb[i] + (1 - b1) * gb[i]
                            vb[i] = b2 * vb[i] + (1 - b2) * gb[i] * gb[i]
                            pb[i] -= lr * (mb[i] / bc1) / ((vb[i] / bc2).squareRoot() + e)
                        }
                    }
                }}
            }}
            parameters[name] = p; exp[name] = m; expSquared[name] = v
        }
    }
}
