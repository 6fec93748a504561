/// The most recent per-patch latencies (a fixed ring), summarised as mean, p50, p95 and max for
/// status replies. Pure value type; the owner serialises access.
public struct LatencyWindow: Sendable {
    public let capacity: Int
    private var samples: [Double] = []
    private var next = 0
    public private(set) var count: UInt64 = 0
    private var total: Double = 0
    public private(set) var maximum: Double = 0

    public init(capacity: Int = 1024) {
        precondition(capacity > 0, "latency window capacity must be positive")
        self.capacity = capacity
        samples.reserveCapacity(capacity)
    }

    public mutating func record(_ seconds: Double) {
        if samples.count < capacity { samples.append(seconds) } else { samples[next] = seconds }
        next = (next + 1) % capacity
        count += 1
        total += seconds
        maximum = Swift.max(maximum, seconds)
    }

    /// Mean over the whole lifetime; percentiles over the window.
    public var mean: Double { count == 0 ? 0 : total / Double(count) }

    public func percentile(_ p: Double) -> Double {
        guard !samples.isEmpty else { return 0 }
        let sorted = samples.sorted()
        let rank = Int((p / 100 * Double(sorted.count - 1)).rounded())
        return sorted[Swift.min(Swift.max(rank, 0), sorted.count - 1)]
    }
}
