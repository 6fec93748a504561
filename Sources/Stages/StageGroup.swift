import Dispatch
import Foundation

/// The replicas of one stage that run in this process: they share the drain accounting
/// (`DrainStateMachine`), the shutdown flags and the count of what the group sent, so that the
/// last replica to stop can send one end-of-stream marker for the whole group.
public final class StageGroup: @unchecked Sendable {
    public let name: String
    private let lock = NSLock()
    private var drain: DrainStateMachine
    private var shutdown = false
    private var hardStop = false
    private var running: Int
    /// Replicas that have not yet passed `memberStopping()`; claimed under the lock so that exactly
    /// one replica (the last to stop emitting) sends the group's end-of-stream.
    private var notYetStopping: Int
    private var emitted: UInt64 = 0
    private var lostMessages: UInt64 = 0
    private var failure: Error?
    private var onFinished: [(Error?) -> Void] = []
    private var finishedFlag = false

    init(name: String, members: Int, expectedEndOfStreams: Int, idleTimeout: Double, drainTimeout: Double) {
        self.name = name
        self.running = members
        self.notYetStopping = members
        self.drain = DrainStateMachine(expectedEndOfStreams: max(expectedEndOfStreams, 1), idleTimeout: idleTimeout,
                                       drainTimeout: drainTimeout, now: StageGroup.now())
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private func locked<R>(_ body: () -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    /// Graceful shutdown: the source stops producing, the others drain (see `DrainStateMachine`).
    public func requestShutdown() { locked { shutdown = true; drain.shutdownRequested(now: StageGroup.now()) } }
    /// Cancellation: every replica leaves its loop at the next poll, without draining.
    public func requestHardStop() { locked { hardStop = true } }

    var isShutdownRequested: Bool { locked { shutdown } }
    var isHardStopped: Bool { locked { hardStop } }

    func messageReceived() { locked { drain.messageReceived(now: StageGroup.now()) } }
    func endOfStream(sent: UInt64) { locked { drain.endOfStream(sent: sent, now: StageGroup.now()) } }
    func tick() -> DrainStateMachine.Action {
        locked {
            let action = drain.tick(now: StageGroup.now())
            if case .finish(let lost) = action { lostMessages = lost }
            return action
        }
    }
    func addEmitted() { locked { emitted += 1 } }

    /// Messages announced by upstream end-of-stream markers that never arrived.
    public var lost: UInt64 { locked { lostMessages } }
    public var totalEmitted: UInt64 { locked { emitted } }
    public var finished: Bool { locked { finishedFlag } }

    /// Registers a callback run once when every replica has stopped (at once if they have).
    func whenFinished(_ body: @escaping (Error?) -> Void) {
        let already: (Bool, Error?) = locked {
            if finishedFlag { return (true, failure) }
            onFinished.append(body)
            return (false, nil)
        }
        if already.0 { body(already.1) }
    }

    /// A replica stopped emitting. Returns true for exactly one replica, the last (it sends the
    /// group's end-of-stream once every replica's patches are out). Replicas that finish in the
    /// same instant must not both see themselves as "not last", or no marker is ever sent.
    func memberStopping() -> Bool {
        locked {
            notYetStopping -= 1
            return notYetStopping == 0
        }
    }

    func memberFinished(error: Error?) {
        let callbacks: ([(Error?) -> Void], Error?) = locked {
            if let error, failure == nil { failure = error }
            running -= 1
            guard running == 0 else { return ([], nil) }
            finishedFlag = true
            defer { onFinished = [] }
            return (onFinished, failure)
        }
        for cb in callbacks.0 { cb(callbacks.1) }
    }
}
