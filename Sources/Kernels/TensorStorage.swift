/// The owned buffer behind a `Tensor`: one allocation, freed in `deinit`.
/// `Tensor` keeps it copy-on-write (the model is swift-nio's `ByteBuffer._Storage`).
public final class TensorStorage {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private let allocation: UnsafeMutableRawPointer

    public init(count: Int) {
        precondition(count >= 0, "negative tensor size \(count)")
        self.count = count
        // 64-byte aligned: the AVX-512 kernels' rows then start on cache lines (glibc's malloc gives
        // 16): measured 3.5–4% of a Unet step in paired A/B (session 4). Done by over-allocating
        // 60 bytes rather than with an aligned allocation: glibc's memalign splits its blocks, and with
        // large blocks kept in the heap (Stages.MallocTuning) the decoder's peak resident
        // size grew from 494 to 886 MiB.
        allocation = UnsafeMutableRawPointer.allocate(byteCount: 4 * max(count, 1) + 60, alignment: 16)
        let aligned = (Int(bitPattern: allocation) + 63) & ~63
        pointer = UnsafeMutableRawPointer(bitPattern: aligned)!.bindMemory(to: Float.self, capacity: max(count, 1))
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

    deinit { allocation.deallocate() }
}
