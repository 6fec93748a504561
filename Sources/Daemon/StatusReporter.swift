import Foundation
import ServiceLifecycle
import Stages

/// Prints one status line every `interval` seconds while the stages run: patches/s per stage,
/// blocked share, queue depths, rejections, the trainer's loss. On a terminal the line is
/// rewritten in place; otherwise (a log file, a pipe, systemd) every report is a plain line.
final class StatusReporter: Service, @unchecked Sendable {
    private let services: [StageService]
    private let interval: Double
    private let queueDepths: Bool
    private let started = Date()
    private let tty = isatty(STDOUT_FILENO) == 1
    private let lock = NSLock()
    private var previous: [StatusLine.Stage]?
    private var lastReport = Date()

    init(services: [StageService], interval: Double, queueDepths: Bool) {
        self.services = services
        self.interval = interval
        self.queueDepths = queueDepths
    }

    func run() async throws {
        let nanos = UInt64(interval * 1e9)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await Task.sleep(nanoseconds: min(nanos, 200_000_000))
            } catch { break }
            if Date().timeIntervalSince(lastReport) >= interval { report(final: false) }
        }
    }

    private func current() -> [StatusLine.Stage] {
        services.map { StatusLine.Stage(name: $0.spec.name, snapshot: $0.snapshot()) }
    }

    private func report(final: Bool) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        let stages = current()
        let line = StatusLine.format(elapsed: now.timeIntervalSince(started), interval: now.timeIntervalSince(lastReport),
                                     previous: previous, current: stages, queueDepths: queueDepths)
        previous = stages
        lastReport = now
        if tty && !final {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
        } else {
            FileHandle.standardOutput.write(Data(((tty ? "\r\u{1B}[K" : "") + line + "\n").utf8))
        }
    }

    /// The last line, always terminated by a newline.
    func printFinal() { report(final: true) }
}
