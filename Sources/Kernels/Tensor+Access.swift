extension Tensor {
    /// Read access to the raw elements for kernels (row-major, `count` elements).
    @inlinable
    func withPointer<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// Write access for kernels, after copy-on-write.
    @inlinable
    mutating func withMutablePointer<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        try withUnsafeMutableBufferPointer { try body($0.baseAddress!) }
    }

    /// Elements of one spatial volume (product of dims after the first two), for NC... tensors.
    var spatialCount: Int { shape.dropFirst(2).reduce(1, *) }

    /// A tensor of the same shape, each element mapped by `f`, split over the thread budget.
    @inlinable
    func map(_ f: @escaping (Float) -> Float) -> Tensor {
        var out = Tensor(uninitialized: shape)
        let n = count
        withPointer { src in
            out.withMutablePointer { dst in
                KernelContext.parallelFor(n, minimumChunk: 1 << 16) { r in
                    for i in r { dst[i] = f(src[i]) }
                }
            }
        }
        return out
    }

    /// Elementwise combination of two tensors of the same shape.
    @inlinable
    func zipMap(_ other: Tensor, _ f: @escaping (Float, Float) -> Float) -> Tensor {
        precondition(shape == other.shape, "elementwise op on shapes \(shape) and \(other.shape)")
        var out = Tensor(uninitialized: shape)
        let n = count
        withPointer { a in
            other.withPointer { b in
                out.withMutablePointer { dst in
                    KernelContext.parallelFor(n, minimumChunk: 1 << 16) { r in
                        for i in r { dst[i] = f(a[i], b[i]) }
                    }
                }
            }
        }
        return out
    }
}
