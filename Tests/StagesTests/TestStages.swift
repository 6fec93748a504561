import Foundation
import Kernels
import Logging
import ServiceLifecycle
import Stages
import Wire

/// A source of `count` small synthetic patches (ids 0..<count split over replicas).
final class CountingSource: PatchSource {
    let count: Int
    let replica: Int
    let replicas: Int
    let side: Int
    private var cursor = 0

    init(count: Int, replica: Int = 0, replicas: Int = 1, side: Int = 8) {
        self.count = count
        self.replica = replica
        self.replicas = replicas
        self.side = side
        self.cursor = replica
    }

    func next() throws -> PatchMessage? {
        guard cursor < count else { return nil }
        defer { cursor += replicas }
        var p = PatchMessage(patchID: UInt64(cursor), sourceCase: "synthetic", seed: UInt64(cursor) &* 7919)
        p.setPayload(Payload.ct, .float32(Tensor(shape: [side, side, side], repeating: Float(cursor))))
        return p
    }
}

/// Thread-safe record of what a sink saw.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [UInt64] = []
    private var values: [UInt64: Float] = [:]
    private var finishes = 0

    func add(_ p: PatchMessage) {
        lock.lock(); defer { lock.unlock() }
        ids.append(p.patchID)
        values[p.patchID] = p.tensor(Payload.ct)?[flat: 0]
    }
    func finished() { lock.lock(); finishes += 1; lock.unlock() }
    var patchIDs: [UInt64] { lock.lock(); defer { lock.unlock() }; return ids }
    var finishCount: Int { lock.lock(); defer { lock.unlock() }; return finishes }
    func value(_ id: UInt64) -> Float? { lock.lock(); defer { lock.unlock() }; return values[id] }
}

final class CollectingSink: PatchProcessor {
    let collected: Collected
    let delay: Double
    init(_ collected: Collected, delay: Double = 0) {
        self.collected = collected
        self.delay = delay
    }
    func process(_ patch: PatchMessage) throws -> PatchMessage? {
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        collected.add(patch)
        return nil
    }
    func finish() throws { collected.finished() }
}

/// Rejects patches whose id is divisible by `every`, with reason "test-reject".
final class RejectingProcessor: PatchProcessor {
    let every: UInt64
    init(every: UInt64) { self.every = every }
    func process(_ patch: PatchMessage) throws -> PatchMessage? {
        if patch.patchID % every == 0 { throw StageRejection("test-reject", "patch \(patch.patchID) divisible by \(every)") }
        return patch
    }
}

enum TestGraph {
    static var counter = 0
    /// A unique inproc prefix per test so endpoints never collide.
    static func prefix() -> String {
        counter += 1
        return "inproc://t\(counter)-\(UUID().uuidString.prefix(6))"
    }

    static func logger() -> Logger {
        var l = Logger(label: "test") { StreamLogHandler.standardError(label: $0) }
        l.logLevel = .error
        return l
    }

    /// source → middle (replicas) → sink, inproc.
    static func chain(prefix p: String, count: Int, middleReplicas: Int = 1, middle: @escaping (Int) -> PatchProcessor,
                      sink: @escaping (Int) -> PatchProcessor, hwm: Int = 2, sinkReplicas: Int = 1,
                      tap: String? = nil, control: String? = nil) -> [StageSpec] {
        var source = StageSpec(name: "loader", role: .source { r, n in CountingSource(count: count, replica: r, replicas: n) })
        source.output = "\(p)/middle"
        source.outputReplicas = middleReplicas
        source.outputHWM = hwm
        var mid = StageSpec(name: "cropper", role: .processor(middle), replicas: Array(0..<middleReplicas))
        mid.input = "\(p)/middle"
        mid.inputHWM = hwm
        mid.output = "\(p)/sink"
        mid.outputReplicas = sinkReplicas
        mid.outputHWM = hwm
        mid.tap = tap
        mid.control = control
        mid.idleTimeout = 0.5
        var last = StageSpec(name: "writer", role: .processor(sink), replicas: Array(0..<sinkReplicas))
        last.input = "\(p)/sink"
        last.inputHWM = hwm
        last.expectedEndOfStreams = middleReplicas
        last.idleTimeout = 0.5
        return [source, mid, last]
    }

    /// Runs the pipeline under a ServiceGroup like `tumord run`; returns when the sink has
    /// drained. `whileRunning` runs concurrently (e.g. to trigger shutdown).
    static func run(_ pipeline: PipelineService, whileRunning: (@Sendable (ServiceGroup) async -> Void)? = nil) async throws {
        let configs: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: pipeline, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .cancelGroup)
        ]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: configs, logger: logger()))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            if let whileRunning { tasks.addTask { await whileRunning(group) } }
            try await tasks.waitForAll()
        }
    }
}

/// A locked value shared between a test and its background tasks.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    func update(_ body: (inout T) -> Void) { lock.lock(); body(&stored); lock.unlock() }
}
