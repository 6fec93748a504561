import Dispatch
import Foundation

/// The replicas of one stage that run in this process: they share the shutdown flags, the run's
/// stream id (sources) and the finished callbacks. Each replica drains by itself (its own
/// `DrainStateMachine`: every replica has its own input endpoint and receives its own
/// end-of-stream markers), so replicas as threads and replicas as processes behave alike.
public final class StageGroup: @unchecked Sendable {
    public let name: String
    private let lock = NSLock()
    private var shutdown = false
    private var shutdownAt: Double?
    private var hardStop = false
    private var running: Int
    private var lostMessages: UInt64 = 0
    private var failure: Error?
    private var onFinished: [(Error?) -> Void] = []
    private var finishedFlag = false
    /// The stream id a source stamps on its messages: one per run of this process's source replicas.
    let streamID: UInt64 = UInt64.random(in: 1...UInt64.max)

    init(name: String, members: Int) {
        self.name = name
        self.running = members
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private func locked<R>(_ body: () -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    /// Graceful shutdown: the source stops producing, the others drain (see `DrainStateMachine`).
    public func requestShutdown() { locked { if !shutdown { shutdown = true; shutdownAt = StageGroup.now() } } }
    /// Cancellation: every replica leaves its loop at the next poll, without draining.
    public func requestHardStop() { locked { hardStop = true } }

    var isShutdownRequested: Bool { locked { shutdown } }
    /// When the graceful shutdown was requested (monotonic seconds), if it was.
    var shutdownRequestedAt: Double? { locked { shutdownAt } }
    var isHardStopped: Bool { locked { hardStop } }

    func addLost(_ n: UInt64) { locked { lostMessages += n } }

    /// Messages announced by upstream end-of-stream markers that never arrived (all replicas).
    public var lost: UInt64 { locked { lostMessages } }
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
