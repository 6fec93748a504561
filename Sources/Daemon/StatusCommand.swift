import ArgumentParser
import Foundation
import Stages
import Wire

extension TumorD {
    /// `tumord status ENDPOINT`: asks a stage's control socket for its counters.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the counters of a running stage.")

        @Argument(help: "The stage's control endpoint, e.g. tcp://127.0.0.1:5711.")
        var endpoint: String

        @Option(name: .long, help: "Seconds to wait for the reply.")
        var timeout: Double = 3

        func run() throws {
            do {
                try StageEndpoints.validate(endpoint)
                let reply = try StatusClient.query(endpoint, timeout: timeout)
                for line in StatusClient.lines(reply) { print(line) }
            } catch {
                reportAndExit(error)
            }
        }
    }
}

enum StatusClient {
    struct NoReply: Error, CustomStringConvertible {
        let endpoint: String
        let timeout: Double
        var description: String { "no status reply from \(endpoint) within \(timeout) s (is the stage running, with a control endpoint?)" }
    }

    static func query(_ endpoint: String, timeout: Double) throws -> StatusReply {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context: context, type: .req)
        defer {
            socket.close(lingerMilliseconds: 0)
            try? context.close()
        }
        try socket.set([.linger(milliseconds: 0), .receiveTimeout(milliseconds: Int(timeout * 1000)),
                        .sendTimeout(milliseconds: Int(timeout * 1000))])
        try socket.connect(StageEndpoints.connectable(endpoint))
        guard try socket.send(bytes: StatusRequest().encode()) else { throw NoReply(endpoint: endpoint, timeout: timeout) }
        guard let frames = try socket.receive(), frames.count == 1 else { throw NoReply(endpoint: endpoint, timeout: timeout) }
        return try StatusReply.decode(frames[0].bytes)
    }

    static func lines(_ r: StatusReply) -> [String] {
        var lines = [
            "stage: \(r.stage)", "replica: \(r.replica)", "received: \(r.received)", "emitted: \(r.emitted)",
            "rejected: \(r.rejected)", "in_flight: \(r.inFlight)",
            "uptime_s: \(String(format: "%.1f", r.uptimeSeconds))", "busy_s: \(String(format: "%.2f", r.busySeconds))",
            "blocked_s: \(String(format: "%.2f", r.blockedSeconds))",
            "latency_ms: mean \(String(format: "%.1f", r.latency.mean * 1000)) p50 \(String(format: "%.1f", r.latency.p50 * 1000))"
                + " p95 \(String(format: "%.1f", r.latency.p95 * 1000)) max \(String(format: "%.1f", r.latency.max * 1000)) (n=\(r.latency.count))",
        ]
        for c in r.rejectedByReason { lines.append("rejected.\(c.name): \(c.value)") }
        for c in r.counters { lines.append("counter.\(c.name): \(c.value)") }
        lines.append("last_error: \(r.lastError.isEmpty ? "-" : r.lastError)")
        return lines
    }
}
