import Foundation
import Stages
import Wire

/// A Prometheus text-format (version 0.0.4) `/metrics` endpoint for one `tumord` process: a
/// plain TCP listener on its own thread, answering `GET /metrics` with every stage replica's
/// counters in this process. Hand-written (a few dozen lines of HTTP/1.0) rather than a
/// dependency: scraping needs no more than one request, one response, close.
final class MetricsEndpoint: @unchecked Sendable {
    struct EndpointError: Error, CustomStringConvertible { let description: String }

    let host: String
    let port: UInt16
    private let snapshots: () -> [StageCounters.Snapshot]
    private var fd: Int32 = -1
    private let lock = NSLock()
    private var stopped = false
    private var thread: Thread?

    /// `address` is `HOST:PORT` (IPv4, e.g. `127.0.0.1:9464` or `0.0.0.0:9464`).
    init(address: String, snapshots: @escaping () -> [StageCounters.Snapshot]) throws {
        guard let colon = address.lastIndex(of: ":"), let p = UInt16(address[address.index(after: colon)...]), p > 0 else {
            throw EndpointError(description: "--metrics '\(address)': expected HOST:PORT, e.g. 127.0.0.1:9464")
        }
        host = String(address[..<colon])
        port = p
        self.snapshots = snapshots
    }

    func start() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw EndpointError(description: "metrics socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host == "*" ? "0.0.0.0" : host, &addr.sin_addr) == 1 else {
            throw EndpointError(description: "--metrics: '\(host)' is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw EndpointError(description: "--metrics \(host):\(port): \(e)")
        }
        let t = Thread { [self] in serve() }
        t.name = "ts.metrics"
        thread = t
        t.start()
    }

    func stop() { lock.lock(); stopped = true; lock.unlock() }
    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func serve() {
        defer { close(fd) }
        while !isStopped {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let client = accept(fd, nil, nil)
            if client < 0 { continue }
            answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = read(client, &buf, buf.count)
            if n <= 0 { break }
            request += buf[..<n]
            if request.count >= 4, String(decoding: request.suffix(4), as: UTF8.self) == "\r\n\r\n" { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let response: String
        if line.count >= 2, line[0] == "GET", line[1] == "/metrics" || line[1].hasPrefix("/metrics?") {
            let body = MetricsEndpoint.render(snapshots())
            response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        } else {
            let body = "tumord serves GET /metrics only\n"
            response = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
                + "Connection: close\r\n\r\n" + body
        }
        var bytes = Array(response.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(client, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 { break }
            offset += n
        }
    }

    /// The Prometheus text exposition of the snapshots (one series per stage replica).
    static func render(_ snapshots: [StageCounters.Snapshot]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples { out += "\(name){\(s.labels)} \(format(s.value))\n" }
        }
        func labels(_ s: StageCounters.Snapshot, _ extra: String = "") -> String {
            "stage=\"\(escape(s.stage))\",replica=\"\(s.replica)\"" + (extra.isEmpty ? "" : "," + extra)
        }
        family("tumorstream_received_total", "counter", "Patches read from the stage's input (sources: produced).",
               snapshots.map { (labels($0), Double($0.received)) })
        family("tumorstream_emitted_total", "counter", "Patches handed downstream (sinks: delivered).",
               snapshots.map { (labels($0), Double($0.emitted)) })
        family("tumorstream_rejected_total", "counter", "Patches and messages rejected, by reason.",
               snapshots.flatMap { s in s.rejectedByReason.map { (labels(s, "reason=\"\(escape($0.name))\""), Double($0.value)) } })
        family("tumorstream_in_flight", "gauge", "Patches being worked on.", snapshots.map { (labels($0), Double($0.inFlight)) })
        family("tumorstream_busy_seconds_total", "counter", "Seconds spent working on patches.",
               snapshots.map { (labels($0), $0.busySeconds) })
        family("tumorstream_blocked_seconds_total", "counter", "Seconds spent blocked on a full downstream queue (backpressure).",
               snapshots.map { (labels($0), $0.blockedSeconds) })
        family("tumorstream_latency_seconds", "summary", "Per-patch latency, from reading a patch to having handed it on.",
               snapshots.flatMap { s -> [(labels: String, value: Double)] in
                   [(labels(s, "quantile=\"0.5\""), s.latency.p50), (labels(s, "quantile=\"0.95\""), s.latency.p95)]
               })
        for s in snapshots {
            out += "tumorstream_latency_seconds_count{\(labels(s))} \(s.latency.count)\n"
            out += "tumorstream_latency_seconds_sum{\(labels(s))} \(format(s.latency.mean * Double(s.latency.count)))\n"
        }
        family("tumorstream_stage_events_total", "counter", "Stage-specific counters (synthesized, passed_through, written, ...).",
               snapshots.flatMap { s in s.counters.map { (labels(s, "name=\"\(escape($0.name))\""), Double($0.value)) } })
        family("tumorstream_stage_value", "gauge", "Stage-specific gauges (the trainer's loss, ...).",
               snapshots.flatMap { s in s.gauges.map { (labels(s, "name=\"\(escape($0.name))\""), $0.value) } })
        family("tumorstream_uptime_seconds", "gauge", "Seconds since the stage replica started.",
               snapshots.map { (labels($0), $0.uptimeSeconds) })
        return out
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
