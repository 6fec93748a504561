import CLibZMQ

/// The process's ZeroMQ context (`void *` from `zmq_ctx_new`). Create one per process and share it
/// between threads (libzmq contexts are thread-safe); sockets are not.
///
/// Teardown: close every socket (each on its own thread), then call `close()`. `shutdown()` may be
/// called from any thread (a signal handler's task, say): every blocking call on every socket then
/// returns a `.terminated` `ZMQError`, and the socket owners close their sockets.
public final class ZMQContext: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer  // void * (zmq ctx)
    private var closed = false

    /// - Parameter ioThreads: libzmq I/O threads; one moves about 1 GB/s of tcp traffic.
    public init(ioThreads: Int = 1) throws {
        guard let h = zmq_ctx_new() else {
            throw ZMQError(errno: zmq_errno(), function: "zmq_ctx_new")
        }
        handle = h
        if ioThreads != 1 {
            do {
                try zmqCheck(where: "zmq_ctx_set(ZMQ_IO_THREADS)") { zmq_ctx_set(h, ZMQ_IO_THREADS, Int32(ioThreads)) }
            } catch {
                zmq_ctx_term(h)
                throw error
            }
        }
    }

    /// Makes blocking calls on this context's sockets return `.terminated` (non-blocking, thread-safe).
    public func shutdown() {
        _ = zmq_ctx_shutdown(handle)
    }

    /// Terminates the context. Blocks until every socket of this context is closed; sockets with
    /// unsent messages and a positive linger delay it by up to their linger.
    public func close() throws {
        guard !closed else { return }
        try zmqCheck(where: "zmq_ctx_term") { zmq_ctx_term(handle) }
        closed = true
    }

    func withUnsafeHandle<R>(_ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        precondition(!closed, "ZMQContext used after close()")
        return try body(handle)
    }

    deinit {
        assert(closed, "ZMQContext deinitialised without close(): close sockets, then the context")
    }
}
