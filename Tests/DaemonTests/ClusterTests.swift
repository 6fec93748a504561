import Foundation
import XCTest

/// The graph as separate `tumord stage` processes on loopback tcp.
final class ClusterTests: XCTestCase {
    static let order = ["writer", "blender", "sampler", "encoder", "cropper"]

    func start(_ config: String, _ dir: URL) throws -> [String: TumordProcess] {
        var procs: [String: TumordProcess] = [:]
        for name in Self.order {
            procs[name] = try TumordProcess(["stage", name, "--config", config], name: name, currentDirectory: dir)
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

    func testSeparateProcessesDeliverOrRejectEveryPatch() throws {
        let dir = try TestConfigs.tempDirectory("cluster")
        let base = TestConfigs.randomBasePort()
        let out = dir.appendingPathComponent("out")
        let config = try TestConfigs.write(TestConfigs.graph(base: base, tcp: true, outDir: out.path, samplerReplicas: 2), in: dir)
        var procs = try start(config, dir)
        defer { for p in procs.values { p.signal(SIGKILL) } }
        XCTAssertNotNil(waitForStatus(TestConfigs.control(base: base, stage: "cropper")), "cropper answers status")
        // A tap on the blender, saving two patches.
        let tapDir = dir.appendingPathComponent("tap")
        let tap = try TumordProcess(["tap", TestConfigs.tap(base: base, stage: "blender"), "--count", "2", "--save", tapDir.path,
                                     "--timeout", "60"], name: "tap")
        usleep(300_000)
        procs["loader"] = try TumordProcess(["stage", "loader", "--config", config, "--max-patches", "16"], name: "loader",
                                            currentDirectory: dir)
        for name in ["loader"] + Self.order.reversed() {
            let p = procs[name]!
            XCTAssertEqual(p.wait(timeout: 90), 0, "\(name) exits 0 by itself after end-of-stream:\n\(p.stdout)\n\(p.stderr)")
        }
        let produced = Summary.int(procs["loader"]!.summary("loader"), "emitted")
        XCTAssertEqual(produced, 16)
        let delivered = Summary.int(procs["writer"]!.summary("writer"), "emitted") ?? -1
        var rejected = 0
        for name in Self.order {
            let s = procs[name]!.summary(name)
            rejected += Summary.int(s, "rejected") ?? 0
            XCTAssertFalse(s?["reasons"]?.contains("lost") ?? false, "\(name) lost patches: \(s ?? [:])")
        }
        XCTAssertEqual(delivered + rejected, 16, "produced = delivered + rejected-with-reason")
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path)
        XCTAssertEqual(files.filter { $0.hasSuffix("_ct.nii") }.count, delivered)
        // Both sampler replicas (threads of one process) took work.
        XCTAssertEqual(Summary.int(procs["sampler"]!.summary("sampler"), "received"), Summary.int(procs["encoder"]!.summary("encoder"), "emitted"))

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
        var rejectedOther = 0
        for name in Self.order where name != "encoder" { rejectedOther += Summary.int(procs[name]!.summary(name), "rejected") ?? 0 }
        let lostInCrash = produced - delivered - rejectedOther
        print("restart test: produced \(produced), delivered \(delivered), rejected \(rejectedOther), lost with the killed encoder \(lostInCrash)")
        XCTAssertEqual(produced, 60)
        XCTAssertGreaterThanOrEqual(lostInCrash, 0)
        // What a killed process can take with it: its input queue, the patch in hand, its output
        // queue, the cropper's pipe to it and kernel socket buffers.
        XCTAssertLessThanOrEqual(lostInCrash, 12, "loss is bounded by the queues around the killed stage")
    }
}
