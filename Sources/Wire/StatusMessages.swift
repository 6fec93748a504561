import CProtobufC
import CTumorStreamProto

/// Asks a stage's control socket (REP) for its counters. One frame.
public struct StatusRequest: Equatable {
    public init() {}

    public func encode() -> [UInt8] {
        var r = Tumorstream__StatusRequest()
        tumorstream__status_request__init(&r)
        r.schema_version = PatchMessage.schemaVersion
        let size = tumorstream__status_request__get_packed_size(&r)
        return [UInt8](unsafeUninitializedCapacity: size) { buf, n in
            n = tumorstream__status_request__pack(&r, buf.baseAddress!)
        }
    }

    public static func decode(_ bytes: [UInt8]) throws -> StatusRequest {
        try bytes.withUnsafeBytes { raw in
            if let v = peekSchemaVersion(raw), v != UInt64(PatchMessage.schemaVersion) {
                throw WireError(.wrongVersion, "status request has schema version \(v), this build reads \(PatchMessage.schemaVersion)")
            }
            guard let p = tumorstream__status_request__unpack(nil, raw.count, raw.bindMemory(to: UInt8.self).baseAddress) else {
                throw WireError(.malformed, "status request (\(raw.count) bytes) is not a valid protobuf StatusRequest")
            }
            defer { tumorstream__status_request__free_unpacked(p, nil) }
            guard p.pointee.schema_version == PatchMessage.schemaVersion else {
                throw WireError(.wrongVersion, "status request has schema version \(p.pointee.schema_version)")
            }
            return StatusRequest()
        }
    }
}

/// Per-patch latency over a stage's lifetime, in seconds.
public struct LatencySummary: Equatable {
    public var count: UInt64
    public var mean: Double
    public var p50: Double
    public var p95: Double
    public var max: Double

    public init(count: UInt64 = 0, mean: Double = 0, p50: Double = 0, p95: Double = 0, max: Double = 0) {
        self.count = count
        self.mean = mean
        self.p50 = p50
        self.p95 = p95
        self.max = max
    }
}

/// A stage's answer to a `StatusRequest`. One frame.
public struct StatusReply: Equatable {
    public var stage: String
    public var replica: Int
    /// Messages read from upstream.
    public var received: UInt64
    /// Patches sent downstream.
    public var emitted: UInt64
    /// Bad messages counted and skipped.
    public var rejected: UInt64
    public var inFlight: UInt64
    public var queueDepth: UInt64
    public var uptimeSeconds: Double
    public var busySeconds: Double
    /// Time spent blocked on a full downstream (backpressure).
    public var blockedSeconds: Double
    public var lastError: String
    public var latency: LatencySummary
    /// Rejections per `WireError.Code` (or any reason name), in a stable order.
    public var rejectedByReason: [(name: String, value: UInt64)]
    /// Stage-specific counters.
    public var counters: [(name: String, value: UInt64)]

    public init(stage: String, replica: Int = 0, received: UInt64 = 0, emitted: UInt64 = 0, rejected: UInt64 = 0,
                inFlight: UInt64 = 0, queueDepth: UInt64 = 0, uptimeSeconds: Double = 0, busySeconds: Double = 0,
                blockedSeconds: Double = 0, lastError: String = "", latency: LatencySummary = LatencySummary(),
                rejectedByReason: [(name: String, value: UInt64)] = [], counters: [(name: String, value: UInt64)] = []) {
        self.stage = stage
        self.replica = replica
        self.received = received
        self.emitted = emitted
        self.rejected = rejected
        self.inFlight = inFlight
        self.queueDepth = queueDepth
        self.uptimeSeconds = uptimeSeconds
        self.busySeconds = busySeconds
        self.blockedSeconds = blockedSeconds
        self.lastError = lastError
        self.latency = latency
        self.rejectedByReason = rejectedByReason
        self.counters = counters
    }

    public static func == (a: StatusReply, b: StatusReply) -> Bool {
        a.stage == b.stage && a.replica == b.replica && a.received == b.received && a.emitted == b.emitted
            && a.rejected == b.rejected && a.inFlight == b.inFlight && a.queueDepth == b.queueDepth
            && a.uptimeSeconds == b.uptimeSeconds && a.busySeconds == b.busySeconds
            && a.blockedSeconds == b.blockedSeconds && a.lastError == b.lastError && a.latency == b.latency
            && a.rejectedByReason.elementsEqual(b.rejectedByReason) { $0 == $1 }
            && a.counters.elementsEqual(b.counters) { $0 == $1 }
    }

    public func encode() -> [UInt8] {
        let arena = CArena()
        var r = Tumorstream__StatusReply()
        tumorstream__status_reply__init(&r)
        r.schema_version = PatchMessage.schemaVersion
        r.stage = arena.string(stage)
        r.replica = UInt32(clamping: replica)
        r.received = received
        r.emitted = emitted
        r.rejected = rejected
        r.in_flight = inFlight
        r.queue_depth = queueDepth
        r.uptime_seconds = uptimeSeconds
        r.busy_seconds = busySeconds
        r.blocked_seconds = blockedSeconds
        r.last_error = arena.string(lastError)
        let lat = arena.allocate(Tumorstream__LatencySummary.self, count: 1)
        tumorstream__latency_summary__init(lat)
        lat.pointee.count = latency.count
        lat.pointee.mean = latency.mean
        lat.pointee.p50 = latency.p50
        lat.pointee.p95 = latency.p95
        lat.pointee.max = latency.max
        r.latency = lat
        (r.n_rejected_by_reason, r.rejected_by_reason) = StatusReply.counterList(rejectedByReason, arena)
        (r.n_counters, r.counters) = StatusReply.counterList(counters, arena)
        return withExtendedLifetime(arena) {
            let size = tumorstream__status_reply__get_packed_size(&r)
            return [UInt8](unsafeUninitializedCapacity: size) { buf, n in
                n = tumorstream__status_reply__pack(&r, buf.baseAddress!)
            }
        }
    }

    private static func counterList(_ list: [(name: String, value: UInt64)], _ arena: CArena)
        -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Tumorstream__Counter>?>?) {
        guard !list.isEmpty else { return (0, nil) }
        let items = arena.allocate(Tumorstream__Counter.self, count: list.count)
        let pointers = arena.allocate(UnsafeMutablePointer<Tumorstream__Counter>?.self, count: list.count)
        for (i, c) in list.enumerated() {
            tumorstream__counter__init(items + i)
            items[i].name = arena.string(c.name)
            items[i].value = c.value
            pointers[i] = items + i
        }
        return (list.count, pointers)
    }

    public static func decode(_ bytes: [UInt8]) throws -> StatusReply {
        try bytes.withUnsafeBytes { raw in
            if let v = peekSchemaVersion(raw), v != UInt64(PatchMessage.schemaVersion) {
                throw WireError(.wrongVersion, "status reply has schema version \(v), this build reads \(PatchMessage.schemaVersion)")
            }
            guard let p = tumorstream__status_reply__unpack(nil, raw.count, raw.bindMemory(to: UInt8.self).baseAddress) else {
                throw WireError(.malformed, "status reply (\(raw.count) bytes) is not a valid protobuf StatusReply")
            }
            defer { tumorstream__status_reply__free_unpacked(p, nil) }
            let r = p.pointee
            guard r.schema_version == PatchMessage.schemaVersion else {
                throw WireError(.wrongVersion, "status reply has schema version \(r.schema_version)")
            }
            var reply = StatusReply(stage: String(cString: r.stage))
            reply.replica = Int(r.replica)
            reply.received = r.received
            reply.emitted = r.emitted
            reply.rejected = r.rejected
            reply.inFlight = r.in_flight
            reply.queueDepth = r.queue_depth
            reply.uptimeSeconds = r.uptime_seconds
            reply.busySeconds = r.busy_seconds
            reply.blockedSeconds = r.blocked_seconds
            reply.lastError = String(cString: r.last_error)
            if let l = r.latency?.pointee {
                reply.latency = LatencySummary(count: l.count, mean: l.mean, p50: l.p50, p95: l.p95, max: l.max)
            }
            reply.rejectedByReason = counters(r.rejected_by_reason, r.n_rejected_by_reason)
            reply.counters = counters(r.counters, r.n_counters)
            return reply
        }
    }

    private static func counters(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Tumorstream__Counter>?>?, _ n: Int)
        -> [(name: String, value: UInt64)] {
        guard let p else { return [] }
        return (0..<n).compactMap { i in p[i].map { (String(cString: $0.pointee.name), $0.pointee.value) } }
    }
}

/// Client side of the control socket: one REQ round trip with a timeout.
public enum StatusClient {
    /// Asks the stage at `endpoint` for its status; throws `StatusClient.Timeout` when no reply
    /// arrives within `timeoutMilliseconds`, a `WireError` when the reply is unreadable.
    public static func query(context: ZMQContext, endpoint: String, timeoutMilliseconds: Int = 2000) throws -> StatusReply {
        let socket = try ZMQSocket(context: context, type: .req)
        defer { socket.close() }
        try socket.set([.linger(milliseconds: 0), .sendTimeout(milliseconds: timeoutMilliseconds),
                        .receiveTimeout(milliseconds: timeoutMilliseconds)])
        try socket.connect(endpoint)
        guard try socket.send(bytes: StatusRequest().encode()) else {
            throw Timeout(endpoint: endpoint, milliseconds: timeoutMilliseconds)
        }
        guard let frames = try socket.receive() else {
            throw Timeout(endpoint: endpoint, milliseconds: timeoutMilliseconds)
        }
        guard frames.count == 1 else {
            throw WireError(.unexpectedMessage, "status reply from \(endpoint) has \(frames.count) frames, expected 1")
        }
        return try StatusReply.decode(frames[0].bytes)
    }

    public struct Timeout: Error, CustomStringConvertible {
        public let endpoint: String
        public let milliseconds: Int
        public var description: String { "no status reply from \(endpoint) within \(milliseconds) ms" }
    }
}
