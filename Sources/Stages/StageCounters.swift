import Foundation
import Wire

/// The live counters of one stage replica. Written by the stage thread, read by the status
/// socket (same thread) and by the in-process status reporter (another thread), hence the lock.
public final class StageCounters: @unchecked Sendable {
    public let stage: String
    public let replica: Int
    private let lock = NSLock()
    private let started = Date()

    private var received: UInt64 = 0
    private var emitted: UInt64 = 0
    private var rejectedByReason: [String: UInt64] = [:]
    private var inFlight: UInt64 = 0
    private var busySeconds: Double = 0
    private var blockedSeconds: Double = 0
    private var blockedSince: Date?
    private var lastError = ""
    private var latency = LatencyWindow()
    private var extraCounters: [(name: String, value: UInt64)] = []
    private var extraGauges: [(name: String, value: Double)] = []
    private var finished = false

    public init(stage: String, replica: Int) {
        self.stage = stage
        self.replica = replica
    }

    private func locked<R>(_ body: () -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    func receivedOne() { locked { received += 1; inFlight = 1 } }
    func emittedOne() { locked { emitted += 1 } }
    func done(busy: Double, latency seconds: Double) {
        locked {
            inFlight = 0
            busySeconds += busy
            latency.record(seconds)
        }
    }
    func reject(_ reason: String, count: UInt64 = 1, error: String) {
        locked {
            rejectedByReason[reason, default: 0] += count
            inFlight = 0
            lastError = error
        }
    }
    func beginBlocked() { locked { blockedSince = Date() } }
    func endBlocked() {
        locked {
            if let since = blockedSince { blockedSeconds += Date().timeIntervalSince(since) }
            blockedSince = nil
        }
    }
    func error(_ message: String) { locked { lastError = message } }
    func setExtras(_ counters: [(name: String, value: UInt64)], _ gauges: [(name: String, value: Double)]) {
        locked { extraCounters = counters; extraGauges = gauges }
    }
    /// Adds what a previous process of this replica did with the same stream (its journal).
    func adopt(received r: UInt64, emitted e: UInt64, rejected: [String: UInt64]) {
        locked {
            received += r
            emitted += e
            for (reason, n) in rejected { rejectedByReason[reason, default: 0] += n }
        }
    }
    func markFinished() { locked { finished = true } }

    /// A consistent copy of every counter.
    public func snapshot() -> Snapshot {
        locked {
            Snapshot(stage: stage, replica: replica, received: received, emitted: emitted,
                     rejectedByReason: rejectedByReason.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                     inFlight: inFlight, uptimeSeconds: Date().timeIntervalSince(started),
                     busySeconds: busySeconds,
                     blockedSeconds: blockedSeconds + (blockedSince.map { Date().timeIntervalSince($0) } ?? 0),
                     lastError: lastError,
                     latency: LatencySummary(count: latency.count, mean: latency.mean, p50: latency.percentile(50),
                                             p95: latency.percentile(95), max: latency.maximum),
                     counters: extraCounters, gauges: extraGauges, finished: finished)
        }
    }

    public struct Snapshot {
        public var stage: String
        public var replica: Int
        public var received: UInt64
        public var emitted: UInt64
        public var rejectedByReason: [(name: String, value: UInt64)]
        public var inFlight: UInt64
        public var uptimeSeconds: Double
        public var busySeconds: Double
        public var blockedSeconds: Double
        public var lastError: String
        public var latency: LatencySummary
        public var counters: [(name: String, value: UInt64)]
        public var gauges: [(name: String, value: Double)]
        public var finished: Bool

        public init(stage: String, replica: Int, received: UInt64, emitted: UInt64,
                    rejectedByReason: [(name: String, value: UInt64)], inFlight: UInt64, uptimeSeconds: Double,
                    busySeconds: Double, blockedSeconds: Double, lastError: String, latency: LatencySummary,
                    counters: [(name: String, value: UInt64)], gauges: [(name: String, value: Double)], finished: Bool) {
            self.stage = stage
            self.replica = replica
            self.received = received
            self.emitted = emitted
            self.rejectedByReason = rejectedByReason
            self.inFlight = inFlight
            self.uptimeSeconds = uptimeSeconds
            self.busySeconds = busySeconds
            self.blockedSeconds = blockedSeconds
            self.lastError = lastError
            self.latency = latency
            self.counters = counters
            self.gauges = gauges
            self.finished = finished
        }

        public var rejected: UInt64 { rejectedByReason.reduce(0) { $0 + $1.value } }

        public func rejected(_ reason: String) -> UInt64 {
            rejectedByReason.first { $0.name == reason }?.value ?? 0
        }

        public func counter(_ name: String) -> UInt64? { counters.first { $0.name == name }?.value }

        /// The wire form for a control-socket reply. Gauges travel as counters in millionths
        /// (`loss_x1e6`), since the status schema carries integers.
        public var statusReply: StatusReply {
            StatusReply(stage: stage, replica: replica, received: received, emitted: emitted, rejected: rejected,
                        inFlight: inFlight, queueDepth: 0, uptimeSeconds: uptimeSeconds, busySeconds: busySeconds,
                        blockedSeconds: blockedSeconds, lastError: lastError, latency: latency,
                        rejectedByReason: rejectedByReason,
                        counters: counters + gauges.map { ($0.name + "_x1e6", UInt64(max(0, ($0.value * 1e6).rounded()))) })
        }
    }
}
