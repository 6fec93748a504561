import Foundation
import Logging
import ServiceLifecycle
import Stages
import Wire

/// Runs a set of stages in this process under one `ServiceGroup` (graceful shutdown on SIGTERM
/// and SIGINT), prints status lines while they run and a summary when they stop.
///
/// The group holds the status reporter and the `PipelineService`, which stops the source first
/// and each later stage only after the one before it has finished (STYLE §5).
struct PipelineRunner {
    var specs: [StageSpec]
    var statusInterval: Double
    var logger: Logger
    /// Also print queue depths (only meaningful when the whole graph runs here).
    var wholeGraph: Bool
    /// `HOST:PORT` of a Prometheus `/metrics` endpoint for this process (`--metrics`), if any.
    var metrics: String? = nil

    struct Outcome {
        var stages: [StatusLine.Stage]
        var lost: UInt64
    }

    func run() async throws -> Outcome {
        let context = try ZMQContext(ioThreads: 1)
        let pipeline = PipelineService(specs: specs, context: context, logger: logger)
        let services = pipeline.stages
        let reporter = StatusReporter(services: services, interval: statusInterval, queueDepths: wholeGraph)
        var endpoint: MetricsEndpoint?
        if let metrics {
            let e = try MetricsEndpoint(address: metrics) { services.flatMap { $0.counters.map { $0.snapshot() } } }
            try e.start()
            endpoint = e
            logger.notice("metrics at http://\(metrics)/metrics")
        }
        defer { endpoint?.stop() }
        // The pipeline last, so that it is the first to hear of a graceful shutdown; when it has
        // drained by itself (end of stream) it ends the group.
        let configs: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: reporter, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore),
            .init(service: pipeline, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .cancelGroup),
        ]
        var groupConfig = ServiceGroupConfiguration(services: configs, gracefulShutdownSignals: [.sigterm, .sigint],
                                                    cancellationSignals: [.sigquit], logger: logger)
        let drain = specs.map(\.drainTimeout).max() ?? 30
        groupConfig.maximumGracefulShutdownDuration = .seconds(Int64(drain * Double(max(specs.count, 1))) + 30)
        let group = ServiceGroup(configuration: groupConfig)
        var failure: Error?
        do {
            try await group.run()
        } catch {
            failure = error
        }
        reporter.printFinal()
        try? context.close()
        if let failure { throw failure }
        let stages = services.map { StatusLine.Stage(name: $0.spec.name, snapshot: $0.snapshot()) }
        return Outcome(stages: stages, lost: services.reduce(0) { $0 + $1.group.lost })
    }

    /// `summary …` lines: one per stage and a total; scripts and tests read them.
    static func summaryLines(_ outcome: Outcome, source: String?, sink: String?) -> [String] {
        var lines: [String] = []
        for s in outcome.stages {
            let n = s.snapshot
            let reasons = n.rejectedByReason.map { "\($0.name):\($0.value)" }.joined(separator: ",")
            let extra = n.counters.map { " \($0.name)=\($0.value)" }.joined()
            lines.append("summary stage=\(s.name) received=\(n.received) emitted=\(n.emitted) rejected=\(n.rejected)"
                         + " reasons=\(reasons.isEmpty ? "-" : reasons) blocked_s=\(StatusLine.fixedString(n.blockedSeconds, 2))"
                         + " busy_s=\(StatusLine.fixedString(n.busySeconds, 2)) p50_ms=\(StatusLine.fixedString(n.latency.p50 * 1000, 1))"
                         + " p95_ms=\(StatusLine.fixedString(n.latency.p95 * 1000, 1))\(extra)"
                         + (n.lastError.isEmpty ? "" : " last_error=\"\(n.lastError.prefix(200))\""))
        }
        if let source, let sink,
           let produced = outcome.stages.first(where: { $0.name == source })?.snapshot.emitted,
           let delivered = outcome.stages.first(where: { $0.name == sink })?.snapshot.emitted {
            let rejected = outcome.stages.filter { $0.name != source }.reduce(0) { $0 + $1.snapshot.rejectedPatches }
            let bad = outcome.stages.reduce(0) { $0 + $1.snapshot.rejectedMessages }
            let accounted = delivered + rejected
            lines.append("summary total produced=\(produced) delivered=\(delivered) rejected=\(rejected) bad_messages=\(bad)"
                         + " unaccounted=\(Int64(produced) - Int64(accounted))")
        }
        return lines
    }
}

extension StatusLine {
    static func fixedString(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }
}
