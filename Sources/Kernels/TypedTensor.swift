/// A contiguous row-major tensor of integer scalars: labels (`UInt8Tensor`, e.g. a segmentation
/// with 0 background, 1 organ, 2 tumor) and indices (`IntTensor`, e.g. codebook indices or argmax).
/// Value semantics through its `[Scalar]` storage (copy-on-write).
public struct TypedTensor<Scalar: BinaryInteger & Sendable>: Equatable, Sendable {
    public private(set) var shape: [Int]
    public private(set) var scalars: [Scalar]

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    public init(shape: [Int], scalars: [Scalar]) {
        precondition(Tensor.elementCount(shape) == scalars.count,
                     "TypedTensor: shape \(shape) holds \(Tensor.elementCount(shape)) elements, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    public init(shape: [Int], repeating value: Scalar) {
        self.init(shape: shape, scalars: [Scalar](repeating: value, count: Tensor.elementCount(shape)))
    }

    public subscript(flat index: Int) -> Scalar {
        get { scalars[index] }
        set { scalars[index] = newValue }
    }

    /// The element at a full multi-index (one coordinate per axis).
    public subscript(_ index: Int...) -> Scalar {
        get { scalars[flatIndex(index)] }
        set { scalars[flatIndex(index)] = newValue }
    }

    func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == rank, "TypedTensor: index \(index) for shape \(shape)")
        var flat = 0
        for (i, n) in zip(index, shape) {
            precondition(i >= 0 && i < n, "TypedTensor: index \(index) out of shape \(shape)")
            flat = flat * n + i
        }
        return flat
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> TypedTensor {
        TypedTensor(shape: newShape, scalars: scalars)
    }

    /// Converts every element (must be representable in `T`).
    public func converted<T: BinaryInteger & Sendable>(to: T.Type = T.self) -> TypedTensor<T> {
        TypedTensor<T>(shape: shape, scalars: scalars.map { T($0) })
    }

    /// 1 where the element equals `value`, else 0, as a Float tensor (a binary mask for losses).
    public func mask(equalTo value: Scalar) -> Tensor {
        Tensor(shape: shape, data: scalars.map { $0 == value ? 1 : 0 })
    }

    /// One-hot along a new axis 1: [N, ...] → [N, classes, ...] Float (the layout of a segmentation
    /// loss). Values must lie in `0..<classes`.
    public func oneHot(classes: Int) -> Tensor {
        precondition(rank >= 1 && classes > 0, "oneHot: shape \(shape), classes \(classes)")
        let n = shape[0], inner = count / max(1, n)
        var out = Tensor(zeros: [n, classes] + shape.dropFirst())
        out.withUnsafeMutableBufferPointer { o in
            for b in 0..<n {
                for i in 0..<inner {
                    let c = Int(scalars[b * inner + i])
                    precondition(c >= 0 && c < classes, "oneHot: value \(c) outside 0..<\(classes)")
                    o[(b * classes + c) * inner + i] = 1
                }
            }
        }
        return out
    }

    /// Count of elements equal to `value`.
    public func count(of value: Scalar) -> Int { scalars.reduce(0) { $0 + ($1 == value ? 1 : 0) } }
}

/// Labels (segmentations): one byte per voxel.
public typealias UInt8Tensor = TypedTensor<UInt8>
/// Indices (codebook entries, argmax results).
public typealias IntTensor = TypedTensor<Int>

extension TypedTensor where Scalar == UInt8 {
    /// Labels from a Float tensor by rounding to the nearest integer, clamped to 0...255.
    public init(rounding t: Tensor) {
        self.init(shape: t.shape, scalars: t.scalars.map { UInt8(min(max($0.rounded(), 0), 255)) })
    }
}

extension Tensor {
    /// The elements as Float (labels or indices to a Float tensor).
    public init<S: BinaryInteger & Sendable>(_ typed: TypedTensor<S>) {
        self.init(shape: typed.shape, data: typed.scalars.map { Float($0) })
    }

    /// Index of the largest element along `axis` (the first on ties); the axis is removed.
    public func argmax(axis: Int) -> IntTensor {
        precondition(axis >= 0 && axis < rank, "argmax: axis \(axis) for shape \(shape)")
        let n = shape[axis]
        precondition(n > 0, "argmax: empty axis \(axis) in \(shape)")
        let inner = shape[(axis + 1)...].reduce(1, *), outer = shape[..<axis].reduce(1, *)
        var result = [Int](repeating: 0, count: outer * inner)
        withUnsafeBufferPointer { x in
            for o in 0..<outer {
                for i in 0..<inner {
                    var best = x[o * n * inner + i], at = 0
                    for k in 1..<n {
                        let v = x[(o * n + k) * inner + i]
                        if v > best { best = v; at = k }
                    }
                    result[o * inner + i] = at
                }
            }
        }
        var newShape = shape
        newShape.remove(at: axis)
        return IntTensor(shape: newShape, scalars: result)
    }
}
