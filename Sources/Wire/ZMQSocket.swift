import CLibZMQ
import Kernels

/// The ZeroMQ socket patterns TumorStream uses.
public enum ZMQSocketType: String, CustomStringConvertible, CaseIterable {
    case push, pull, pub, sub, req, rep, router, dealer, pair

    var cValue: Int32 {
        switch self {
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .pub: return ZMQ_PUB
        case .sub: return ZMQ_SUB
        case .req: return ZMQ_REQ
        case .rep: return ZMQ_REP
        case .router: return ZMQ_ROUTER
        case .dealer: return ZMQ_DEALER
        case .pair: return ZMQ_PAIR
        }
    }

    public var description: String { rawValue.uppercased() }
}

/// One ZeroMQ socket (`void *` from `zmq_socket`).
///
/// Not thread-safe: create, use and close it on one thread (the ZeroMQ rule; STYLE §6).
/// `close()` is explicit (it sets LINGER first); `deinit` only asserts that it was called.
///
/// Sending: `send(_:)` takes `OutboundFrame`s; `.tensor` frames are handed to ZeroMQ without a copy
/// and their storage is released by ZeroMQ's free callback. A send that cannot complete within the
/// send timeout (or at once, with `.dontWait`) returns `false`: the peer is at its high-water mark.
/// Receiving: `receive()` returns all frames of one multipart message, or `nil` on timeout.
public final class ZMQSocket {
    public let type: ZMQSocketType
    private var handle: UnsafeMutableRawPointer?  // void * (zmq socket)
    /// The endpoints this socket bound or connected, for error messages.
    public private(set) var endpoints: [String] = []
    private let outgoing: UnsafeMutablePointer<zmq_msg_t>

    public init(context: ZMQContext, type: ZMQSocketType) throws {
        self.type = type
        let h = context.withUnsafeHandle { zmq_socket($0, type.cValue) }
        guard let h else {
            throw ZMQError(errno: zmq_errno(), function: "zmq_socket", socketType: type)
        }
        handle = h
        outgoing = .allocate(capacity: 1)
    }

    deinit {
        assert(handle == nil, "ZMQSocket (\(type)) deinitialised without close()")
        outgoing.deallocate()
    }

    /// Closes the socket after setting LINGER: how long unsent messages may still be delivered
    /// (0 drops them at once; -1 waits forever and can make `ZMQContext.close()` hang).
    public func close(lingerMilliseconds: Int = 0) {
        guard let h = handle else { return }
        var linger = Int32(lingerMilliseconds)
        _ = zmq_setsockopt(h, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        _ = zmq_close(h)  // only fails with ENOTSOCK, which `handle != nil` rules out
        handle = nil
    }

    public var isClosed: Bool { handle == nil }

    func withUnsafeHandle<R>(_ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        guard let h = handle else { preconditionFailure("\(type) socket used after close()") }
        return try body(h)
    }

    private var endpointDescription: String? { endpoints.isEmpty ? nil : endpoints.joined(separator: ",") }

    // MARK: endpoints

    /// Binds, e.g. "inproc://cropper.out", "tcp://127.0.0.1:5555", "tcp://127.0.0.1:*" (read the
    /// chosen port from `lastEndpoint`).
    public func bind(_ endpoint: String) throws {
        try withUnsafeHandle { h in
            try zmqCheck(where: "zmq_bind", socketType: type, endpoint: endpoint) { zmq_bind(h, endpoint) }
        }
        endpoints.append(lastEndpoint ?? endpoint)
    }

    public func connect(_ endpoint: String) throws {
        try withUnsafeHandle { h in
            try zmqCheck(where: "zmq_connect", socketType: type, endpoint: endpoint) { zmq_connect(h, endpoint) }
        }
        endpoints.append(endpoint)
    }

    public func unbind(_ endpoint: String) throws {
        try withUnsafeHandle { h in
            try zmqCheck(where: "zmq_unbind", socketType: type, endpoint: endpoint) { zmq_unbind(h, endpoint) }
        }
        endpoints.removeAll { $0 == endpoint }
    }

    public func disconnect(_ endpoint: String) throws {
        try withUnsafeHandle { h in
            try zmqCheck(where: "zmq_disconnect", socketType: type, endpoint: endpoint) { zmq_disconnect(h, endpoint) }
        }
        endpoints.removeAll { $0 == endpoint }
    }

    /// The endpoint last bound, with the port the OS chose for "tcp://host:*".
    public var lastEndpoint: String? {
        guard let h = handle else { return nil }
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        guard zmq_getsockopt(h, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else { return nil }
        let s = String(cString: buffer)
        return s.isEmpty ? nil : s
    }

    // MARK: sending

    public enum SendMode {
        /// Wait up to the socket's send timeout (`.sendTimeout`, default forever).
        case blocking
        /// Return `false` at once if the message cannot be queued.
        case dontWait
    }

    /// Sends one multipart message. Returns `false` (nothing sent, nothing leaked) when the message
    /// cannot be queued in time: the peers are at their high-water mark (PUSH, DEALER) or absent.
    /// PUB never blocks: it drops the message for subscribers at their HWM and returns `true`.
    @discardableResult
    public func send(_ frames: [OutboundFrame], mode: SendMode = .blocking) throws -> Bool {
        precondition(!frames.isEmpty, "a ZeroMQ message has at least one frame")
        let h = withUnsafeHandle { $0 }
        for (i, frame) in frames.enumerated() {
            let more = i < frames.count - 1
            frame.initialize(outgoing)
            var flags: Int32 = more ? ZMQ_SNDMORE : 0
            if mode == .dontWait && i == 0 { flags |= ZMQ_DONTWAIT }
            while true {
                let result: ZMQCallResult<Int32>
                do {
                    result = try zmqCall(where: "zmq_msg_send", socketType: type, endpoint: endpointDescription) {
                        zmq_msg_send(outgoing, h, flags)
                    }
                } catch {
                    zmq_msg_close(outgoing)  // releases a zero-copy owner
                    throw error
                }
                if case .done = result { break }
                if i == 0 {
                    zmq_msg_close(outgoing)
                    return false
                }
                // Later parts of a multipart message: ZeroMQ admits the whole message once the
                // first part is in, so this path is not expected; keep trying rather than
                // leave a half-sent message.
            }
        }
        return true
    }

    /// Sends a single frame of bytes (copied).
    @discardableResult
    public func send(bytes: [UInt8], mode: SendMode = .blocking) throws -> Bool {
        try send([.bytes(bytes)], mode: mode)
    }

    // MARK: receiving

    public enum ReceiveMode {
        /// Wait up to the socket's receive timeout (`.receiveTimeout`, default forever).
        case blocking
        /// Return `nil` at once if no message is queued.
        case dontWait
    }

    /// Receives all frames of one multipart message; `nil` when none arrived in time.
    public func receive(mode: ReceiveMode = .blocking) throws -> [ZMQFrame]? {
        let h = withUnsafeHandle { $0 }
        var frames: [ZMQFrame] = []
        while true {
            let frame = ZMQFrame()
            let flags: Int32 = (mode == .dontWait && frames.isEmpty) ? ZMQ_DONTWAIT : 0
            var done = false
            while !done {
                let result = try zmqCall(where: "zmq_msg_recv", socketType: type, endpoint: endpointDescription) {
                    zmq_msg_recv(frame.message, h, flags)
                }
                switch result {
                case .done: done = true
                case .wouldBlock:
                    if frames.isEmpty { return nil }
                    // Remaining parts of a multipart message arrive together with the first.
                }
            }
            frames.append(frame)
            if zmq_msg_more(frame.message) == 0 { return frames }
        }
    }
}
