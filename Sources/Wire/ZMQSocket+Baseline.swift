import CLibZMQ

/// Raw libzmq paths with no TumorStream encoding, for benchmarks that measure the wire's
/// overhead against libzmq itself in the same run. Not for pipeline code.
extension ZMQSocket {
    /// Sends `buffers` as one multipart message with `zmq_send_const` (zero-copy, no header, no
    /// ownership tracking). The memory must outlive the send: the caller keeps it alive until
    /// the socket is closed.
    @discardableResult
    public func sendRawConstant(_ buffers: [UnsafeRawBufferPointer]) throws -> Bool {
        let h = withUnsafeHandle { $0 }
        for (i, b) in buffers.enumerated() {
            let flags: Int32 = i < buffers.count - 1 ? ZMQ_SNDMORE : 0
            while true {
                let r = try zmqCall(where: "zmq_send_const", socketType: type) {
                    zmq_send_const(h, b.baseAddress, b.count, flags)
                }
                if case .done = r { break }
                if i == 0 { return false }
            }
        }
        return true
    }

    /// Receives one multipart message into a reused `zmq_msg_t` and discards it; returns its
    /// total size in bytes, or nil on timeout.
    public func receiveRawDiscarding() throws -> Int? {
        let h = withUnsafeHandle { $0 }
        let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        zmq_msg_init(msg)
        defer { zmq_msg_close(msg); msg.deallocate() }
        var total = 0
        var first = true
        while true {
            let r = try zmqCall(where: "zmq_msg_recv", socketType: type) { zmq_msg_recv(msg, h, 0) }
            guard case .done(let n) = r else {
                if first { return nil }
                continue
            }
            first = false
            total += Int(n)
            if zmq_msg_more(msg) == 0 { return total }
        }
    }
}
