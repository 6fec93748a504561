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
            guard let g = gradients[name], var p = parameters[name] else { continue }
            precondition(p.shape == g.shape, "AdamW: parameter \(name) \(p.shape) and gradient \(g.shape) differ")
            var m = exp[name] ?? Tensor(zeros: p.shape), v = expSquared[name] ?? Tensor(zeros: p.shape)
            let (b1, b2, e, decay) = (beta1, beta2, eps, 1 - lr * weightDecay)
            g.withUnsafeBufferPointer { gp in m.withUnsafeMutableBufferPointer { mp in
                v.withUnsafeMutableBufferPointer { vp in p.withUnsafeMutableBufferPointer { pp in
                    for i in 0..<pp.count {
                        pp[i] *= decay
                        mp[i] = b1 * mp[i] + (1 - b1) * gp[i]
                        vp[i] = b2 * vp[i] + (1 - b2) * gp[i] * gp[i]
                        pp[i] -= lr * (mp[i] / bc1) / ((vp[i] / bc2).squareRoot() + e)
                    }
                }}
            }}
            parameters[name] = p; exp[name] = m; expSquared[name] = v
        }
    }
}
