/// The one-line progress report `tumord` prints every few seconds, computed from two snapshots
/// of the stages' counters (pure, so it is tested without a pipeline).
public struct StatusLine {
    /// Wire-level reasons: messages that were never pipeline patches (bad input from outside).
    public static let messageReasons: Set<String> = ["malformed", "truncated", "wrong-version", "bad-payload", "unexpected-message"]

    public struct Stage {
        public var name: String
        public var snapshot: StageCounters.Snapshot
        public init(name: String, snapshot: StageCounters.Snapshot) {
            self.name = name
            self.snapshot = snapshot
        }
    }

    /// `[  12.0s] loader 4.1/s | cropper 4.0/s blk 12% q2 | … | writer 3.9/s done 48 | loss 0.5312`
    /// Rates and blocked share are over the interval since `previous`; the queue depth of an edge
    /// (known in-process only) is what the stage before sent minus what this stage received.
    public static func format(elapsed: Double, interval: Double, previous: [Stage]?, current: [Stage],
                              queueDepths: Bool) -> String {
        var parts: [String] = []
        for (i, stage) in current.enumerated() {
            let s = stage.snapshot
            let before = previous?.first { $0.name == stage.name }?.snapshot
            let dt = max(interval, 1e-9)
            let rate = Double(s.emitted - (before?.emitted ?? 0)) / dt
            let blocked = (s.blockedSeconds - (before?.blockedSeconds ?? 0)) / dt
            var p = "\(stage.name) \(fixed(rate, 1))/s"
            if blocked > 0.005 { p += " blk \(Int((blocked * 100).rounded()))%" }
            if queueDepths, i > 0 {
                let upstream = current[i - 1].snapshot.emitted
                let depth = upstream > s.received ? upstream - s.received : 0
                p += " q\(depth)"
            }
            let rejected = s.rejected
            if rejected > 0 { p += " rej \(rejected)" }
            if i == current.count - 1 && i > 0 { p += " done \(s.emitted)" }
            parts.append(p)
        }
        var line = "[\(pad(fixed(elapsed, 1), 7))s] " + parts.joined(separator: " | ")
        for stage in current {
            for g in stage.snapshot.gauges { line += " | \(g.name) \(gaugeValue(g.value))" }
        }
        return line
    }

    /// Counts such as the trainer's step print as integers; measurements keep four decimals.
    static func gaugeValue(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return fixed(v, 4)
    }

    static func fixed(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        var s = "\(r)"
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: dot, to: s.endIndex) - 1
            if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
        } else if digits > 0 {
            s += "." + String(repeating: "0", count: digits)
        }
        return s
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}

extension StageCounters.Snapshot {
    /// Messages read but rejected before they became patches (drain accounting counts them).
    public var rejectedMessages: UInt64 {
        rejectedByReason.filter { StatusLine.messageReasons.contains($0.name) }.reduce(0) { $0 + $1.value }
    }

    /// Patches this stage read and refused (its own reasons, plus `lost-in-transit`).
    public var rejectedPatches: UInt64 { rejected - rejectedMessages }
}
