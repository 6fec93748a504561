import CLibZMQ
import Foundation
import Kernels

/// A frame to send. `.tensor` and large `.bytes` are handed to ZeroMQ without copying
/// (`zmq_msg_init_data`): ZeroMQ keeps the storage alive until it has written the bytes, then its
/// free callback releases it on an I/O thread. `.frame` forwards a received frame (reference
/// counted by ZeroMQ, no copy).
public enum OutboundFrame {
    /// Raw bytes; copied when shorter than `zeroCopyThreshold`, zero-copy otherwise.
    case bytes([UInt8])
    /// Float32 elements as little-endian bytes, zero-copy.
    case tensor(Tensor)
    /// A received frame sent on (e.g. a stage forwarding a payload it did not change).
    case frame(ZMQFrame)

    /// Below this size a copy is cheaper than the free callback (pyzmq uses 64 kB).
    public static let zeroCopyThreshold = 64 * 1024

    public var byteCount: Int {
        switch self {
        case .bytes(let b): return b.count
        case .tensor(let t): return t.count * MemoryLayout<Float>.size
        case .frame(let f): return f.count
        }
    }

    /// Initialises `msg` with this frame's bytes. The caller sends or closes it.
    func initialize(_ msg: UnsafeMutablePointer<zmq_msg_t>) {
        switch self {
        case .bytes(let b):
            if b.count >= OutboundFrame.zeroCopyThreshold {
                let pointer = b.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
                ZeroCopyOwner.handOver(b, pointer: pointer, count: b.count, to: msg)
            } else {
                zmq_msg_init_size(msg, b.count)
                if !b.isEmpty {
                    b.withUnsafeBytes { zmq_msg_data(msg).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                }
            }
        case .tensor(let t):
            let count = t.count * MemoryLayout<Float>.size
            if count == 0 { zmq_msg_init(msg); return }
            let pointer = t.withUnsafeBufferPointer { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
            ZeroCopyOwner.handOver(t, pointer: pointer, count: count, to: msg)
        case .frame(let f):
            zmq_msg_init(msg)
            zmq_msg_copy(msg, f.message)
        }
    }
}

/// Keeps the Swift storage behind a zero-copy frame alive until ZeroMQ's free callback runs.
/// The storage is never written while ZeroMQ holds it: the owner keeps an immutable copy of the
/// value (`Tensor`/`Array` are copy-on-write, so a writer elsewhere copies first).
final class ZeroCopyOwner {
    let value: Any
    let byteCount: Int

    private init(_ value: Any, byteCount: Int) {
        self.value = value
        self.byteCount = byteCount
    }

    /// Initialises `msg` over `pointer` (memory owned by `value`) and retains `value` until
    /// ZeroMQ calls the free callback.
    static func handOver(_ value: Any, pointer: UnsafeMutableRawPointer, count: Int,
                         to msg: UnsafeMutablePointer<zmq_msg_t>) {
        let hint = Unmanaged.passRetained(ZeroCopyOwner(value, byteCount: count)).toOpaque()
        ZeroCopyLedger.shared.add(count)
        let rc = zmq_msg_init_data(msg, pointer, count, zeroCopyRelease, hint)
        if rc != 0 {  // only ENOMEM; fall back to a copy so the send still happens
            zeroCopyRelease(pointer, hint)
            zmq_msg_init_size(msg, count)
            zmq_msg_data(msg).copyMemory(from: pointer, byteCount: count)
        }
    }
}

/// ZeroMQ's free callback for zero-copy frames. Runs on whichever thread drops the last
/// reference (usually a libzmq I/O thread): it only releases a retain and updates the ledger.
private let zeroCopyRelease: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
    guard let hint else { return }
    let owner = Unmanaged<ZeroCopyOwner>.fromOpaque(hint).takeRetainedValue()
    ZeroCopyLedger.shared.remove(owner.byteCount)
}

/// Counts the zero-copy frames ZeroMQ currently holds (queued or being written).
final class ZeroCopyLedger: @unchecked Sendable {
    static let shared = ZeroCopyLedger()
    private let lock = NSLock()
    private var frames = 0
    private var bytes = 0

    func add(_ n: Int) { lock.lock(); frames += 1; bytes += n; lock.unlock() }
    func remove(_ n: Int) { lock.lock(); frames -= 1; bytes -= n; lock.unlock() }
    var snapshot: (frames: Int, bytes: Int) { lock.lock(); defer { lock.unlock() }; return (frames, bytes) }
}

extension Wire {
    /// Zero-copy frames handed to ZeroMQ and not yet released by it, and their bytes: the memory
    /// that queues hold on the sending side (bounded by the high-water marks).
    public static var zeroCopyFramesInFlight: (frames: Int, bytes: Int) { ZeroCopyLedger.shared.snapshot }
}

/// One received frame (`zmq_msg_t`), closed when the frame is released. Read-only.
public final class ZMQFrame {
    let message: UnsafeMutablePointer<zmq_msg_t>  // zmq_msg_t, initialised, closed in deinit

    /// An empty frame for `zmq_msg_recv`.
    init() {
        message = .allocate(capacity: 1)
        zmq_msg_init(message)
    }

    /// A frame holding a copy of `bytes` (tests, decoding stored messages).
    public convenience init(copying bytes: [UInt8]) {
        self.init()
        zmq_msg_close(message)
        zmq_msg_init_size(message, bytes.count)
        if !bytes.isEmpty {
            bytes.withUnsafeBytes { zmq_msg_data(message).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }

    /// The frame ZeroMQ would deliver for `outbound` (zero-copy where the outbound frame is):
    /// lets `PatchMessage.decode(frames:)` read what `encode()` made without a socket.
    public convenience init(_ outbound: OutboundFrame) {
        self.init()
        zmq_msg_close(message)
        outbound.initialize(message)
    }

    deinit {
        zmq_msg_close(message)
        message.deallocate()
    }

    public var count: Int { zmq_msg_size(message) }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(message), count: count))
    }

    /// A copy of the bytes.
    public var bytes: [UInt8] {
        withUnsafeBytes { src in
            [UInt8](unsafeUninitializedCapacity: src.count) { dst, initialized in
                if src.count > 0 { UnsafeMutableRawPointer(dst.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
                initialized = src.count
            }
        }
    }
}
