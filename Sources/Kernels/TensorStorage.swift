/// The owned buffer behind a `Tensor`: one allocation, freed in `deinit`.
/// `Tensor` keeps it copy-on-write (the model is swift-nio's `ByteBuffer._Storage`).
public final class TensorStorage {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        precondition(count >= 0, "negative tensor size \(count)")
        self.count = count
        // 64-byte aligned: the AVX-512 kernels' rows then start on cache lines (glibc's malloc gives
        // 16): measured 3.5–4% of a Unet step in paired A/B (session 4).
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: 4 * max(count, 1), alignment: 64)
            .bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(zeros count: Int) {
        self.init(count: count)
        pointer.initialize(repeating: 0, count: count)
    }

    public func copy() -> TensorStorage {
        let other = TensorStorage(count: count)
        other.pointer.update(from: pointer, count: count)
        return other
    }

    deinit { pointer.deallocate() }
}
