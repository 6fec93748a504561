import Wire

/// Everything the runtime needs to run one stage (some or all of its replicas) in this process:
/// endpoints, high-water marks, timeouts and a factory for the per-replica work. Built from the
/// config by `PipelineGraph`; tests build it by hand.
public struct StageSpec {
    /// Creates the work of one replica, on that replica's thread.
    public enum Role {
        /// The first stage: `(replica, replicas)` lets replicas split the work between them.
        case source((_ replica: Int, _ replicas: Int) throws -> PatchSource)
        case processor((_ replica: Int) throws -> PatchProcessor)
    }

    public var name: String
    public var role: Role
    /// Replica indices run in this process (endpoint K is derived for replica K).
    public var replicas: [Int]
    /// Total replicas of this stage across processes (the loader splits its items over them).
    public var totalReplicas: Int
    /// This stage's input endpoint (replica 0); `nil` for the source.
    public var input: String?
    /// PULL receive high-water mark, in messages.
    public var inputHWM: Int = 2
    /// The next stage's input endpoint (its replica 0); `nil` for a sink.
    public var output: String?
    /// Replicas of the next stage: one PUSH socket per replica, connected to its input.
    public var outputReplicas: Int = 1
    /// The output is an external consumer's endpoint (a Python trainer): one PUSH socket that
    /// binds it (replica K: see `StageEndpoints`), readers connect.
    public var outputBinds = false
    /// PUSH send high-water mark, in messages.
    public var outputHWM: Int = 2
    /// PUB endpoint that mirrors what this stage emits; `nil`: no tap.
    public var tap: String?
    public var tapHWM: Int = 2
    /// REP endpoint answering `StatusRequest`s; `nil`: no control socket.
    public var control: String?
    /// End-of-stream markers that end each replica's input: one from every upstream replica.
    public var expectedEndOfStreams = 1
    /// Whether each replica sends end-of-stream markers (one per downstream replica) when it finishes.
    public var sendsEndOfStream = true
    /// Where replicas keep their journal (`StageJournal`) so that a restarted process takes over
    /// its predecessor's counts; nil: no journal.
    public var stateDirectory: String?
    /// Seconds of quiet input after which a stage stops waiting (see `DrainStateMachine`).
    public var idleTimeout: Double = 1.0
    /// Seconds a graceful shutdown may keep reading when no end-of-stream marker comes.
    public var drainTimeout: Double = 10.0
    /// How long closing the output may keep delivering queued messages.
    public var lingerMilliseconds = 10_000
    /// How long closing the tap may keep delivering what it already queued for a connected
    /// subscriber: long enough for the last patch to leave over loopback, short enough that a
    /// slow subscriber cannot hold up shutdown.
    public static let tapLingerMilliseconds = 1_000
    /// Artificial delay per patch (backpressure demonstrations and tests); 0 normally.
    public var delayMilliseconds = 0
    /// Host name recorded in provenance (empty in-process).
    public var host = ""

    public init(name: String, role: Role, replicas: [Int] = [0], totalReplicas: Int? = nil) {
        self.name = name
        self.role = role
        self.replicas = replicas
        self.totalReplicas = totalReplicas ?? replicas.count
    }

    public var isSource: Bool { if case .source = role { return true } else { return false } }
}
