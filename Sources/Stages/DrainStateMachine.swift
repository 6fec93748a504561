/// When a stage (all its replicas in this process) may stop: the end-of-stream and shutdown
/// accounting as a pure state machine, tested without sockets (STYLE §4).
///
/// An upstream group sends one end-of-stream marker after its last patch, carrying how many
/// messages it sent on the edge. Replicas of this stage share one machine: a marker lands on one
/// replica while patches sent before it may still sit in the pipes of the others, so the stage is
/// drained when every expected marker arrived *and* the messages received add up to the
/// announced count. Messages that never arrive (a peer process killed with patches in its queues)
/// are given up on after `idleTimeout` seconds of silence and reported as `lost`, never silently.
///
/// A graceful shutdown without a marker (one `tumord stage` process stopped while its upstream
/// still runs) keeps reading until the input is quiet for `idleTimeout` or `drainTimeout` passed.
public struct DrainStateMachine: Sendable {
    public enum Action: Equatable, Sendable {
        /// Go on reading input.
        case keepReading
        /// Stop: forward end-of-stream, flush, close. `lost` messages were announced but never came.
        case finish(lost: UInt64)
    }

    public let expectedEndOfStreams: Int
    public let idleTimeout: Double
    public let drainTimeout: Double

    public private(set) var received: UInt64 = 0
    public private(set) var announced: UInt64 = 0
    public private(set) var endOfStreams = 0
    public private(set) var finished: Action?
    private var lastActivity: Double
    private var shutdownAt: Double?

    public init(expectedEndOfStreams: Int = 1, idleTimeout: Double, drainTimeout: Double, now: Double) {
        precondition(expectedEndOfStreams >= 1, "a stage with input expects at least one end-of-stream marker")
        self.expectedEndOfStreams = expectedEndOfStreams
        self.idleTimeout = idleTimeout
        self.drainTimeout = drainTimeout
        self.lastActivity = now
    }

    /// A message (good or bad) was read from the input.
    public mutating func messageReceived(now: Double) {
        received += 1
        lastActivity = now
    }

    /// An end-of-stream marker from an upstream group that sent `sent` messages.
    public mutating func endOfStream(sent: UInt64, now: Double) {
        endOfStreams += 1
        announced += sent
        lastActivity = now
    }

    /// SIGTERM/SIGINT or the service group's graceful shutdown reached this stage.
    public mutating func shutdownRequested(now: Double) {
        if shutdownAt == nil { shutdownAt = now }
    }

    public var isShuttingDown: Bool { shutdownAt != nil }
    public var allEndOfStreamsSeen: Bool { endOfStreams >= expectedEndOfStreams }

    /// Called after each poll cycle (message or timeout): what to do next.
    public mutating func tick(now: Double) -> Action {
        if let finished { return finished }
        var decision: Action = .keepReading
        if allEndOfStreamsSeen {
            if received >= announced {
                decision = .finish(lost: 0)
            } else if now - lastActivity >= idleTimeout {
                decision = .finish(lost: announced - received)
            }
        } else if let shutdownAt {
            if now - lastActivity >= idleTimeout || now - shutdownAt >= drainTimeout {
                decision = .finish(lost: 0)
            }
        }
        if decision != .keepReading { finished = decision }
        return decision
    }
}
