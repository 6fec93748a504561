import Logging
import ServiceLifecycle
import Wire

/// One stage (the replicas of it that run in this process) as a swift-service-lifecycle
/// `Service` (a whole chain runs as one `PipelineService`). `run()` starts one thread per replica and returns when all of them have stopped:
/// the source when it is exhausted or asked to shut down, the others when the end-of-stream
/// accounting says they are drained. Graceful shutdown stops the source from producing and lets
/// the others drain; cancellation stops every replica at its next poll.
public final class StageService: Service, @unchecked Sendable {
    public let spec: StageSpec
    public let group: StageGroup
    /// One per replica, in `spec.replicas` order.
    public let counters: [StageCounters]
    private let workers: [StageWorker]

    public init(spec: StageSpec, context: ZMQContext, logger: Logger) {
        precondition(!spec.replicas.isEmpty, "stage \(spec.name) runs no replica")
        precondition(spec.isSource == (spec.input == nil), "stage \(spec.name): a source has no input, a processor needs one")
        self.spec = spec
        group = StageGroup(name: spec.name, members: spec.replicas.count)
        counters = spec.replicas.map { StageCounters(stage: spec.name, replica: $0) }
        workers = zip(spec.replicas, counters).map { [group] in
            StageWorker(spec: spec, replica: $0, context: context, group: group, counters: $1, logger: logger)
        }
    }

    public func run() async throws {
        let group = self.group
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await runThreads()
            } onCancel: {
                group.requestHardStop()
            }
        } onGracefulShutdown: {
            group.requestShutdown()
        }
    }

    /// Starts the replica threads and waits for all of them to stop.
    func runThreads() async throws {
        let group = self.group
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            group.whenFinished { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            for w in workers { w.start() }
        }
    }

    /// Sum over this process's replicas.
    public func snapshot() -> StageCounters.Snapshot {
        let all = counters.map { $0.snapshot() }
        var total = all[0]
        total.replica = -1
        for s in all.dropFirst() {
            total.received += s.received
            total.emitted += s.emitted
            total.inFlight += s.inFlight
            total.busySeconds += s.busySeconds
            total.blockedSeconds += s.blockedSeconds
            if !s.lastError.isEmpty { total.lastError = s.lastError }
            total.finished = total.finished && s.finished
            var reasons = Dictionary(uniqueKeysWithValues: total.rejectedByReason.map { ($0.name, $0.value) })
            for r in s.rejectedByReason { reasons[r.name, default: 0] += r.value }
            total.rejectedByReason = reasons.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            var extra = Dictionary(total.counters.map { ($0.name, $0.value) }, uniquingKeysWith: +)
            for c in s.counters { extra[c.name, default: 0] += c.value }
            total.counters = extra.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            if !s.gauges.isEmpty { total.gauges = s.gauges }
        }
        return total
    }
}
