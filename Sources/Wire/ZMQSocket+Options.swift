import CLibZMQ

/// Socket options TumorStream sets. Times are milliseconds; -1 means "forever".
public enum ZMQSocketOption {
    /// Messages queued per outgoing pipe before PUSH/DEALER block and PUB drops (ZMQ_SNDHWM).
    /// Counts messages, not bytes, and is approximate; 0 means no limit.
    case sendHighWaterMark(Int)
    /// Messages queued per incoming pipe (ZMQ_RCVHWM). On inproc the effective bound is SNDHWM+RCVHWM.
    case receiveHighWaterMark(Int)
    /// How long `close()` keeps trying to deliver queued messages (ZMQ_LINGER).
    case linger(milliseconds: Int)
    /// Blocking sends give up after this long and report "would block" (ZMQ_SNDTIMEO).
    case sendTimeout(milliseconds: Int)
    /// Blocking receives give up after this long and return nil (ZMQ_RCVTIMEO).
    case receiveTimeout(milliseconds: Int)
    /// SUB: deliver messages whose first frame starts with this prefix (empty: all) (ZMQ_SUBSCRIBE).
    case subscribe([UInt8])
    case unsubscribe([UInt8])
    /// Queue messages only to completed connections (ZMQ_IMMEDIATE): a PUSH with no live peer blocks
    /// instead of filling a pipe to a peer that is still connecting or gone.
    case immediate(Bool)
    /// Reconnect delay after a peer went away (ZMQ_RECONNECT_IVL).
    case reconnectInterval(milliseconds: Int)
    /// Routing id of this socket as seen by a ROUTER peer (ZMQ_ROUTING_ID).
    case routingID([UInt8])
    /// Kernel socket buffer sizes for tcp (ZMQ_SNDBUF / ZMQ_RCVBUF); -1 keeps the OS default.
    case sendBufferSize(Int)
    case receiveBufferSize(Int)
}

extension ZMQSocket {
    /// Sets one option; options that affect connections (HWMs, IMMEDIATE) must precede bind/connect.
    public func set(_ option: ZMQSocketOption) throws {
        switch option {
        case .sendHighWaterMark(let v): try setInt(ZMQ_SNDHWM, v, "ZMQ_SNDHWM")
        case .receiveHighWaterMark(let v): try setInt(ZMQ_RCVHWM, v, "ZMQ_RCVHWM")
        case .linger(let v): try setInt(ZMQ_LINGER, v, "ZMQ_LINGER")
        case .sendTimeout(let v): try setInt(ZMQ_SNDTIMEO, v, "ZMQ_SNDTIMEO")
        case .receiveTimeout(let v): try setInt(ZMQ_RCVTIMEO, v, "ZMQ_RCVTIMEO")
        case .subscribe(let prefix): try setBytes(ZMQ_SUBSCRIBE, prefix, "ZMQ_SUBSCRIBE")
        case .unsubscribe(let prefix): try setBytes(ZMQ_UNSUBSCRIBE, prefix, "ZMQ_UNSUBSCRIBE")
        case .immediate(let on): try setInt(ZMQ_IMMEDIATE, on ? 1 : 0, "ZMQ_IMMEDIATE")
        case .reconnectInterval(let v): try setInt(ZMQ_RECONNECT_IVL, v, "ZMQ_RECONNECT_IVL")
        case .routingID(let id): try setBytes(ZMQ_ROUTING_ID, id, "ZMQ_ROUTING_ID")
        case .sendBufferSize(let v): try setInt(ZMQ_SNDBUF, v, "ZMQ_SNDBUF")
        case .receiveBufferSize(let v): try setInt(ZMQ_RCVBUF, v, "ZMQ_RCVBUF")
        }
    }

    /// Sets several options in order.
    public func set(_ options: [ZMQSocketOption]) throws {
        for o in options { try set(o) }
    }

    private func setInt(_ name: Int32, _ value: Int, _ label: String) throws {
        var v = Int32(clamping: value)
        try withUnsafeHandle { h in
            try zmqCheck(where: "zmq_setsockopt(\(label)=\(value))", socketType: type) {
                zmq_setsockopt(h, name, &v, MemoryLayout<Int32>.size)
            }
        }
    }

    private func setBytes(_ name: Int32, _ value: [UInt8], _ label: String) throws {
        try withUnsafeHandle { h in
            try value.withUnsafeBytes { buf in
                try zmqCheck(where: "zmq_setsockopt(\(label))", socketType: type) {
                    zmq_setsockopt(h, name, buf.baseAddress, buf.count)
                }
            }
        }
    }

    /// Reads an int option (ZMQ_SNDHWM, ZMQ_RCVHWM, ZMQ_LINGER, ...), mainly for tests and status.
    public func intOption(_ name: Int32) throws -> Int {
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try withUnsafeHandle { h in
            try zmqCheck(where: "zmq_getsockopt(\(name))", socketType: type) { zmq_getsockopt(h, name, &v, &size) }
        }
        return Int(v)
    }
}

extension ZMQSocketOption {
    /// Raw option numbers for `ZMQSocket.intOption(_:)`.
    public static let sendHighWaterMarkOption = ZMQ_SNDHWM
    public static let receiveHighWaterMarkOption = ZMQ_RCVHWM
    public static let lingerOption = ZMQ_LINGER
}
