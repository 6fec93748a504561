import Foundation

/// Elementwise arithmetic and activations (PyTorch semantics).
extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { a.zipMap(b, +) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.zipMap(b, -) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { a.zipMap(b, *) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(by: s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scaled(by: s) }

    public func adding(_ other: Tensor) -> Tensor { self + other }
    public func multiplied(by other: Tensor) -> Tensor { self * other }
    public func scaled(by s: Float) -> Tensor { map { $0 * s } }
    /// `self * s + t` elementwise with scalars.
    public func affine(scale s: Float, shift t: Float) -> Tensor { map { $0 * s + t } }

    /// In-place `self += other` (same shape).
    public mutating func add(_ other: Tensor) {
        precondition(shape == other.shape, "add: shapes \(shape) and \(other.shape)")
        let n = count
        other.withPointer { b in
            withMutablePointer { a in
                KernelContext.parallelFor(n, minimumChunk: 1 << 16) { r in
                    for i in r { a[i] += b[i] }
                }
            }
        }
    }

    /// SiLU: x·sigmoid(x).
    public func silu() -> Tensor { map { $0 / (1 + expf(-$0)) } }
    /// Exact GELU: 0.5·x·(1 + erf(x/√2)), PyTorch's default `approximate='none'`.
    public func gelu() -> Tensor { map { 0.5 * $0 * (1 + erff($0 * 0.70710678118654752)) } }
    /// LeakyReLU with `negativeSlope` (PyTorch default 0.01).
    public func leakyReLU(negativeSlope: Float = 0.01) -> Tensor { map { $0 >= 0 ? $0 : $0 * negativeSlope } }
    public func relu() -> Tensor { map { max($0, 0) } }
    public func sigmoid() -> Tensor { map { 1 / (1 + expf(-$0)) } }

    /// PReLU with `weight` of one element (shared) or one per channel (axis 1).
    public func prelu(weight: Tensor) -> Tensor {
        precondition(rank >= 2 || weight.count == 1, "prelu: input \(shape) needs a channel axis")
        let c = rank >= 2 ? shape[1] : 1
        precondition(weight.count == 1 || weight.count == c,
                     "prelu: weight \(weight.shape) must have 1 or \(c) elements for input \(shape)")
        let inner = rank >= 2 ? shape.dropFirst(2).reduce(1, *) : count
        var out = Tensor(uninitialized: shape)
        let planes = count / max(inner, 1)
        let w = weight.scalars
        withPointer { src in
            out.withMutablePointer { dst in
                KernelContext.parallelFor(planes) { r in
                    for p in r {
                        let a = w.count == 1 ? w[0] : w[p % c]
                        let base = p * inner
                        for i in base..<(base + inner) { let v = src[i]; dst[i] = v >= 0 ? v : a * v }
                    }
                }
            }
        }
        return out
    }

    /// `x * scale[n,c] + shift[n,c]` per channel; `scale`/`shift` have shape [C] or [N, C] (either may be nil).
    public func channelAffine(scale: Tensor?, shift: Tensor?) -> Tensor {
        precondition(rank >= 2, "channelAffine: input \(shape) needs N and C axes")
        let n = shape[0], c = shape[1], inner = spatialCount
        for t in [scale, shift].compactMap({ $0 }) {
            precondition(t.count == c || t.count == n * c,
                         "channelAffine: parameter \(t.shape) must have \(c) or \(n * c) elements for input \(shape)")
        }
        let sc = scale?.scalars, sh = shift?.scalars
        var out = Tensor(uninitialized: shape)
        withPointer { src in
            out.withMutablePointer { dst in
                KernelContext.parallelFor(n * c) { r in
                    for p in r {
                        let a = sc.map { $0.count == c ? $0[p % c] : $0[p] } ?? 1
                        let b = sh.map { $0.count == c ? $0[p % c] : $0[p] } ?? 0
                        let base = p * inner
                        for i in base..<(base + inner) { dst[i] = src[i] * a + b }
                    }
                }
            }
        }
        return out
    }
}
