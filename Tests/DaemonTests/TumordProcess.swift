import Foundation
import XCTest

/// A running `tumord` process with its output collected in the background, for integration
/// tests that start stages, signal them and read their summaries.
final class TumordProcess {
    let process = Process()
    let name: String
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()

    init(_ arguments: [String], name: String, currentDirectory: URL? = nil) throws {
        self.name = name
        process.executableURL = TumordBinary.url
        process.arguments = arguments
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        let o = Pipe(), e = Pipe()
        process.standardOutput = o
        process.standardError = e
        o.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock(); self.out.append(d); self.lock.unlock()
        }
        e.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock(); self.err.append(d); self.lock.unlock()
        }
        try process.run()
    }

    var stdout: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }
    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func signal(_ sig: Int32) { if process.isRunning { kill(process.processIdentifier, sig) } }

    /// Waits for exit; returns the status or nil on timeout (the process is then killed).
    @discardableResult
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        usleep(50_000)  // let the pipe handlers drain
        return process.terminationStatus
    }

    /// Peak resident set (VmHWM) in bytes while the process lives, or nil.
    var peakRSS: Int? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first
            return kb.map { $0 * 1024 }
        }
        return nil
    }

    /// The `summary …` line for `stage` (or `total`) as key → value.
    func summary(_ stage: String) -> [String: String]? {
        Summary.parse(stdout, stage)
    }
}

enum Summary {
    static func parse(_ text: String, _ stage: String) -> [String: String]? {
        let tag = stage == "total" ? "summary total " : "summary stage=\(stage) "
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix(tag) }) else { return nil }
        var fields: [String: String] = [:]
        for part in line.split(separator: " ") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        return fields
    }

    static func int(_ fields: [String: String]?, _ key: String) -> Int? { fields?[key].flatMap { Int($0) } }
    static func double(_ fields: [String: String]?, _ key: String) -> Double? { fields?[key].flatMap { Double($0) } }
}

/// Config files for integration tests: the default graph on its own random loopback ports, so
/// tests never collide with each other or with a running daemon.
enum TestConfigs {
    static func tempDirectory(_ tag: String) throws -> URL {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("tumord-\(tag)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Below Linux's ephemeral range (32768+), so that a process connecting before its peer has
    /// bound cannot be handed the same port as its own source port (a TCP self-connect).
    static func randomBasePort() -> Int { 20_000 + Int.random(in: 0..<120) * 100 }

    /// The six-stage procedural graph. `tcp`: stage inputs on loopback tcp (one process per
    /// stage possible), else inproc. Ports: input base+1.., tap base+20.., control base+40..
    static func graph(base: Int, tcp: Bool, outDir: String, hwm: Int = 2, samplerReplicas: Int = 1,
                      samplerThreads: Int = 1, writerDelayMs: Int = 0, cases: Int = 1, idleTimeout: Double = 1.0) -> String {
        let names = ["loader", "cropper", "encoder", "sampler", "blender", "writer"]
        var lines = [
            "seed: 7",
            "pipeline: [\(names.joined(separator: ", "))]",
            "runtime: {status_interval_s: 1, idle_timeout_s: \(idleTimeout), drain_timeout_s: 20, linger_ms: 5000}",
            "data: {source: phantom, phantom: {cases: \(cases), seed: 3, shape: [128, 112, 112]}, organ: liver, patches_per_case: 8}",
            "synthesis: {engine: procedural, synthesize_probability: 0.5}",
            "writer: {out_dir: \"\(outDir)\", compress: false}",
            "stages:",
        ]
        var port = base
        for (i, n) in names.enumerated() {
            var fields = ["threads: \(n == "sampler" ? samplerThreads : 1)"]
            if i > 0 {
                fields.append("input: \"" + (tcp ? "tcp://127.0.0.1:\(port)" : "inproc://\(n).in") + "\"")
                fields.append("hwm: \(hwm)")
            }
            if n == "sampler" { fields.append("replicas: \(samplerReplicas)"); port += samplerReplicas - 1 }
            if n != "writer" { fields.append("tap: \"tcp://127.0.0.1:\(base + 20 + i * 2)\"") }
            fields.append("control: \"tcp://127.0.0.1:\(base + 40 + i * 2)\"")
            if n == "writer" && writerDelayMs > 0 { fields.append("delay_ms: \(writerDelayMs)") }
            lines.append("  \(n): {\(fields.joined(separator: ", "))}")
            port += 1
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func control(base: Int, stage: String) -> String {
        let names = ["loader", "cropper", "encoder", "sampler", "blender", "writer"]
        return "tcp://127.0.0.1:\(base + 40 + names.firstIndex(of: stage)! * 2)"
    }

    static func tap(base: Int, stage: String) -> String {
        let names = ["loader", "cropper", "encoder", "sampler", "blender", "writer"]
        return "tcp://127.0.0.1:\(base + 20 + names.firstIndex(of: stage)! * 2)"
    }

    static func write(_ text: String, in dir: URL) throws -> String {
        let path = dir.appendingPathComponent("pipeline.yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
