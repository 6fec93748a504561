import Logging
import ServiceLifecycle
import Wire

/// All stages that run in this process as one `Service`: `run()` starts every replica thread and
/// returns when every stage has stopped.
///
/// Graceful shutdown (SIGTERM/SIGINT through the `ServiceGroup`) goes stage by stage in
/// pipeline order: the source is told to stop first; each later stage is told only when the
/// stage before it has finished and sent its end-of-stream marker, so it only drains what is
/// already queued. (One service for the chain rather than one per stage: stages also finish by
/// themselves at end-of-stream, and a `ServiceGroup` treats a service that finishes out of
/// order during its own reverse-order shutdown as an error.)
/// If any stage fails, the others are stopped at once and `run()` throws that error.
public final class PipelineService: Service, @unchecked Sendable {
    /// Upstream first.
    public let stages: [StageService]

    public init(specs: [StageSpec], context: ZMQContext, logger: Logger) {
        stages = specs.map { StageService(spec: $0, context: context, logger: logger) }
    }

    public func run() async throws {
        let stages = self.stages
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    for s in stages {
                        tasks.addTask {
                            do {
                                try await s.runThreads()
                            } catch {
                                for other in stages { other.group.requestHardStop() }
                                throw error
                            }
                        }
                    }
                    try await tasks.waitForAll()
                }
            } onCancel: {
                for s in stages { s.group.requestHardStop() }
            }
        } onGracefulShutdown: {
            PipelineService.shutdown(stages[...])
        }
    }

    /// Tells the first stage to stop; each next one when the one before it has finished.
    static func shutdown(_ stages: ArraySlice<StageService>) {
        guard let first = stages.first else { return }
        first.group.requestShutdown()
        first.group.whenFinished { _ in shutdown(stages.dropFirst()) }
    }
}
