/// Endpoint naming for replicas: replica 0 uses the configured endpoint, replica K > 0 the port
/// K above it for tcp (`tcp://127.0.0.1:5603` → `:5604`), or a `.K` suffix for inproc and ipc
/// (`inproc://sampler.in` → `inproc://sampler.in.1`). Every replica binds its own input, tap and
/// control endpoint; the upstream stage connects its PUSH socket to all replicas' inputs, so
/// either side of an edge can be replicated without a broker.
public enum StageEndpoints {
    public struct EndpointError: Error, CustomStringConvertible {
        public let endpoint: String
        public let problem: String
        public var description: String { "endpoint '\(endpoint)': \(problem)" }
    }

    /// Checks the form `tcp://host:port`, `inproc://name` or `ipc://path`.
    public static func validate(_ endpoint: String) throws {
        if endpoint.hasPrefix("inproc://") || endpoint.hasPrefix("ipc://") {
            let rest = endpoint.drop(while: { $0 != "/" }).dropFirst(2)
            if rest.isEmpty { throw EndpointError(endpoint: endpoint, problem: "has no name after the scheme") }
            return
        }
        guard endpoint.hasPrefix("tcp://") else {
            throw EndpointError(endpoint: endpoint, problem: "must start with tcp://, inproc:// or ipc://")
        }
        let rest = endpoint.dropFirst("tcp://".count)
        guard let colon = rest.lastIndex(of: ":"), !rest[..<colon].isEmpty else {
            throw EndpointError(endpoint: endpoint, problem: "needs host:port")
        }
        let port = rest[rest.index(after: colon)...]
        if port == "*" { return }
        guard let p = Int(port), (1...65535).contains(p) else {
            throw EndpointError(endpoint: endpoint, problem: "port '\(port)' is not a number in 1...65535")
        }
    }

    /// The endpoint replica `replica` binds.
    public static func forReplica(_ endpoint: String, _ replica: Int) -> String {
        precondition(replica >= 0, "negative replica \(replica)")
        guard replica > 0 else { return endpoint }
        if endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":"),
           let port = Int(endpoint[endpoint.index(after: colon)...]) {
            return String(endpoint[...colon]) + String(port + replica)
        }
        return endpoint + "." + String(replica)
    }

    /// The endpoints a sender connects to: one per replica of the receiving stage.
    public static func allReplicas(_ endpoint: String, replicas: Int) -> [String] {
        (0..<max(replicas, 1)).map { forReplica(endpoint, $0) }
    }

    /// A bound tcp endpoint is reached on loopback when it names the wildcard address.
    public static func connectable(_ endpoint: String) -> String {
        endpoint.replacingOccurrences(of: "tcp://0.0.0.0:", with: "tcp://127.0.0.1:")
            .replacingOccurrences(of: "tcp://*:", with: "tcp://127.0.0.1:")
    }
}
