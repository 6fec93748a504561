/// When a stage (all its replicas in this process) may stop: the end-of-stream and shutdown
/// accounting as a pure state machine, tested without sockets (STYLE §4).
///
/// Every replica of the upstream stage sends each replica of this stage one end-of-stream marker
/// after its last patch, carrying how many messages it sent to that replica (one machine per
/// receiving replica, whether it is a thread or a process). A marker travels behind the patches
/// of its sender on the same connection, but patches of other senders may still be on their way,
/// so the replica is drained when every expected marker arrived *and* the messages received add
/// up to the announced count. Messages that never arrive (a peer process killed with patches in its queues)
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
    /// Senders whose marker arrived (a repeated marker from one sender counts once).
    public private(set) var markerSenders: [String: UInt64] = [:]
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

    /// An end-of-stream marker from an upstream replica that sent `sent` messages here. A named
    /// `sender` counts once: a second marker from it is ignored.
    public mutating func endOfStream(sent: UInt64, from sender: String = "", now: Double) {
        lastActivity = now
        if !sender.isEmpty {
            guard markerSenders[sender] == nil else { return }
            markerSenders[sender] = sent
        }
        endOfStreams += 1
        announced += sent
    }

    /// Takes over the state a previous process of this replica left in its journal (see
    /// `StageJournal`): what it received and which markers it saw.
    public mutating func restore(received: UInt64, markers: [String: UInt64], now: Double) {
        self.received += received
        for (sender, sent) in markers { endOfStream(sent: sent, from: sender, now: now) }
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
