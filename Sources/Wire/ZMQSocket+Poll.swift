import CLibZMQ

/// Readiness flags for `ZMQSocket.poll`.
public struct ZMQPollEvents: OptionSet, Hashable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    /// At least one message can be received without blocking.
    public static let readable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// At least one message can be sent without blocking.
    public static let writable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

extension ZMQSocket {
    /// Waits until one of `items` is ready, or `timeoutMilliseconds` pass (-1: forever; 0: check).
    /// Returns the ready events per item (empty sets on timeout). All sockets must belong to the
    /// calling thread.
    public static func poll(_ items: [(socket: ZMQSocket, events: ZMQPollEvents)],
                            timeoutMilliseconds: Int) throws -> [ZMQPollEvents] {
        var c = items.map { item in
            zmq_pollitem_t(socket: item.socket.withUnsafeHandle { $0 }, fd: 0,
                           events: item.events.rawValue, revents: 0)
        }
        let result = try c.withUnsafeMutableBufferPointer { buf in
            try zmqCall(where: "zmq_poll") { zmq_poll(buf.baseAddress, Int32(buf.count), timeoutMilliseconds) }
        }
        if case .wouldBlock = result { return items.map { _ in [] } }
        return c.map { ZMQPollEvents(rawValue: $0.revents) }
    }

    /// Waits for this socket alone; returns the events that are ready (empty on timeout).
    public func poll(_ events: ZMQPollEvents, timeoutMilliseconds: Int) throws -> ZMQPollEvents {
        try ZMQSocket.poll([(self, events)], timeoutMilliseconds: timeoutMilliseconds)[0]
    }
}
