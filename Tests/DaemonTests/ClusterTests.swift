import Foundation
import XCTest

/// The graph as separate `tumord stage` processes on loopback tcp.
final class ClusterTests: XCTestCase {
    static let order = ["writer", "blender", "sampler", "encoder", "cropper"]

    /// One process per stage; `replicaProcesses[name] = N` runs that stage as N `--replica K`
    /// processes instead (keys `name#K`).
    func start(_ config: String, _ dir: URL, replicaProcesses: [String: Int] = [:]) throws -> [String: TumordProcess] {
        var procs: [String: TumordProcess] = [:]
        for name in Self.order {
            if let n = replicaProcesses[name] {
                for k in 0..<n {
                    procs["\(name)#\(k)"] = try TumordProcess(["stage", name, "--config", config, "--replica", "\(k)"],
                                                               name: "\(name)#\(k)", currentDirectory: dir)
                }
            } else {
                procs[name] = try TumordProcess(["stage", name, "--config", config], name: name, currentDirectory: dir)
            }
        }
        return procs
    }

    func waitForStatus(_ endpoint: String, timeout: Double = 30, until: (Int) -> Bool = { _ in true }) -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let r = try? TumordBinary.run(["status", endpoint, "--timeout", "1"]), r.status == 0,
               let n = StatusText.int(r.stdout, "emitted"), until(n) { return n }
            usleep(200_000)
        }
        return nil
    }

    /// Every stage its own process, the sampler as two `--replica K` processes: end-of-stream
    /// reaches both replicas (the encoder sends one marker to each), each drains and exits by
    /// itself, and the blender waits for both replicas' markers.
    func testSeparateProcessesDeliverOrRejectEveryPatch() throws {
        let dir = try TestConfigs.tempDirectory("cluster")
        let base = TestConfigs.randomBasePort()
        let out = dir.appendingPathComponent("out")
        let config = try TestConfigs.write(TestConfigs.graph(base: base, tcp: true, outDir: out.path, samplerReplicas: 2,
                                                             samplerThreads: 2), in: dir)
        var procs = try start(config, dir, replicaProcesses: ["sampler": 2])
        defer { for p in procs.values { p.signal(SIGKILL) } }
        XCTAssertNotNil(waitForStatus(TestConfigs.control(base: base, stage: "cropper")), "cropper answers status")
        // A tap on the blender, saving two patches.
        let tapDir = dir.appendingPathComponent("tap")
        let tap = try TumordProcess(["tap", TestConfigs.tap(base: base, stage: "blender"), "--count", "2", "--save", tapDir.path,
                                     "--timeout", "60"], name: "tap")
        usleep(300_000)
        procs["loader"] = try TumordProcess(["stage", "loader", "--config", config, "--max-patches", "16"], name: "loader",
                                            currentDirectory: dir)
        let keys = ["loader", "cropper", "encoder", "sampler#0", "sampler#1", "blender", "writer"]
        for key in keys {
            let p = procs[key]!
            XCTAssertEqual(p.wait(timeout: 90), 0, "\(key) exits 0 by itself after end-of-stream:\n\(p.stdout)\n\(p.stderr)")
        }
        let produced = Summary.int(procs["loader"]!.summary("loader"), "emitted")
        XCTAssertEqual(produced, 16)
        let delivered = Summary.int(procs["writer"]!.summary("writer"), "emitted") ?? -1
        var rejected = 0
        for key in keys.dropFirst() {
            let s = procs[key]!.summary(String(key.split(separator: "#")[0]))
            rejected += Summary.int(s, "rejected") ?? 0
            XCTAssertFalse(s?["reasons"]?.contains("lost") ?? false, "\(key) lost patches: \(s ?? [:])")
        }
        XCTAssertEqual(delivered + rejected, 16, "produced = delivered + rejected-with-reason")
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path)
        XCTAssertEqual(files.filter { $0.hasSuffix("_ct.nii") }.count, delivered)
        // Both sampler replica processes took work, and between them everything the encoder sent.
        let r0 = Summary.int(procs["sampler#0"]!.summary("sampler"), "received") ?? 0
        let r1 = Summary.int(procs["sampler#1"]!.summary("sampler"), "received") ?? 0
        XCTAssertGreaterThan(r0, 0)
        XCTAssertGreaterThan(r1, 0)
        XCTAssertEqual(r0 + r1, Summary.int(procs["encoder"]!.summary("encoder"), "emitted"))
        // `tumord stage` runs with the stage's thread budget.
        XCTAssertTrue(procs["sampler#1"]!.stdout.contains("threads 2 (OpenBLAS 2)"), procs["sampler#1"]!.stdout)
        XCTAssertTrue(procs["writer"]!.stdout.contains("threads 1 (OpenBLAS 1)"), procs["writer"]!.stdout)

        XCTAssertEqual(tap.wait(timeout: 30), 0, tap.stderr)
        XCTAssertEqual(tap.stdout.split(separator: "\n").filter { $0.hasPrefix("patch ") }.count, 2, tap.stdout)
        let saved = (try? FileManager.default.contentsOfDirectory(atPath: tapDir.path)) ?? []
        XCTAssertEqual(saved.filter { $0.hasSuffix(".nii.gz") }.count, 4, "\(saved)")
    }

    func testKilledStageRestartsAndTheFlowResumes() throws {
        let dir = try TestConfigs.tempDirectory("restart")
        let base = TestConfigs.randomBasePort()
        let config = try TestConfigs.write(TestConfigs.graph(base: base, tcp: true, outDir: dir.appendingPathComponent("out").path,
                                                             writerDelayMs: 40), in: dir)
        var procs = try start(config, dir)
        defer { for p in procs.values { p.signal(SIGKILL) } }
        procs["loader"] = try TumordProcess(["stage", "loader", "--config", config, "--max-patches", "60"], name: "loader",
                                            currentDirectory: dir)
        let writer = TestConfigs.control(base: base, stage: "writer")
        let before = try XCTUnwrap(waitForStatus(writer, until: { $0 >= 4 }), "patches reach the writer")
        procs["encoder"]!.signal(SIGKILL)
        _ = procs["encoder"]!.wait(timeout: 10)
        usleep(500_000)
        procs["encoder"] = try TumordProcess(["stage", "encoder", "--config", config], name: "encoder", currentDirectory: dir)
        let after = waitForStatus(writer, timeout: 60, until: { $0 >= before + 8 })
        XCTAssertNotNil(after, "the flow resumed after the encoder restarted (writer had \(before))")
        for name in ["loader"] + Self.order.reversed() {
            let p = procs[name]!
            XCTAssertEqual(p.wait(timeout: 90), 0, "\(name) exits 0:\n\(p.stdout)\n\(p.stderr)")
        }
        let produced = Summary.int(procs["loader"]!.summary("loader"), "emitted") ?? 0
        let delivered = Summary.int(procs["writer"]!.summary("writer"), "emitted") ?? 0
        var rejected = 0, lost = 0
        var reasons: [String] = []
        for name in Self.order {
            let s = procs[name]!.summary(name)
            rejected += Summary.int(s, "rejected") ?? 0
            for r in (s?["reasons"] ?? "-").split(separator: ",") where r != "-" {
                reasons.append("\(name):\(r)")
                let kv = r.split(separator: ":")
                if kv[0].hasPrefix("lost-") { lost += Int(kv[1]) ?? 0 }
            }
        }
        print("restart test: produced \(produced), delivered \(delivered), rejected \(rejected) (\(reasons))")
        XCTAssertEqual(produced, 60)
        // The restarted encoder took over its predecessor's journal: what the killed process had
        // handed on is not counted again, so the books balance exactly.
        let encoder = procs["encoder"]!
        XCTAssertTrue(encoder.stderr.contains("took over the previous process's journal") ||
                      encoder.stdout.contains("took over the previous process's journal"), encoder.stderr)
        XCTAssertGreaterThanOrEqual(Summary.int(encoder.summary("encoder"), "received") ?? 0, before)
        XCTAssertEqual(delivered + rejected, produced, "produced = delivered + rejected-with-reason (lost included): \(reasons)")
        // Only what was really lost: at most what a killed process can take with it (its input
        // queue, the patch in hand, its output queue, the cropper's pipe to it, socket buffers).
        XCTAssertLessThanOrEqual(lost, 12, "loss is bounded by the queues around the killed stage: \(reasons)")
    }
}
