import Foundation
import XCTest

/// `tumord run`: the whole graph in one process, on the built-in phantom.
final class RunCommandTests: XCTestCase {
    static let packageRoot = ConfigLoaderTests.packageRoot

    func testDefaultConfigRunsWithoutDownloadsAndStopsByItself() throws {
        let dir = try TestConfigs.tempDirectory("default")
        let config = Self.packageRoot.appendingPathComponent("conf/default.yaml").path
        let p = try TumordProcess(["run", "--config", config, "--max-patches", "20"], name: "run", currentDirectory: dir)
        let status = p.wait(timeout: 120)
        XCTAssertEqual(status, 0, "stdout:\n\(p.stdout)\nstderr:\n\(p.stderr)")
        let total = p.summary("total")
        XCTAssertEqual(Summary.int(total, "produced"), 20, p.stdout)
        XCTAssertEqual(Summary.int(total, "unaccounted"), 0, "produced = delivered + rejected: \(p.stdout)")
        let delivered = try XCTUnwrap(Summary.int(total, "delivered"))
        XCTAssertGreaterThan(delivered, 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("out/patches").path)
        XCTAssertEqual(files.filter { $0.hasSuffix("_ct.nii.gz") }.count, delivered)
        XCTAssertEqual(files.filter { $0.hasSuffix("_label.nii.gz") }.count, delivered)
        let index = try String(contentsOfFile: dir.appendingPathComponent("out/patches/patches.tsv").path, encoding: .utf8)
        XCTAssertEqual(index.split(separator: "\n").count, delivered + 1)
        XCTAssertTrue(p.stdout.contains("loader "), "status lines: \(p.stdout)")
        XCTAssertFalse(p.stdout.contains("\u{1B}["), "not a TTY: plain lines only")
        let cropper = p.summary("cropper")
        let chosen = Summary.int(cropper, "chosen_for_synthesis") ?? -1
        XCTAssertGreaterThan(chosen, 0, "some patches synthesized (p=0.5): \(p.stdout)")
        XCTAssertLessThan(chosen, 20, "some patches left healthy (p=0.5): \(p.stdout)")
        XCTAssertEqual(Summary.int(p.summary("sampler"), "synthesized"), chosen)
        XCTAssertGreaterThan(Summary.int(cropper, "volumes_reused") ?? 0, 0, "consecutive patches of a case reuse its prepared volume")
    }

    func testSigtermStopsTheLoaderDrainsAndExitsZero() throws {
        let dir = try TestConfigs.tempDirectory("sigterm")
        let base = TestConfigs.randomBasePort()
        let config = try TestConfigs.write(TestConfigs.graph(base: base, tcp: false, outDir: dir.appendingPathComponent("out").path),
                                           in: dir)
        let p = try TumordProcess(["run", "--config", config], name: "run", currentDirectory: dir)
        // Wait until patches reach the writer, then ask for a graceful stop.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, p.isRunning {
            if let r = try? TumordBinary.run(["status", TestConfigs.control(base: base, stage: "writer"), "--timeout", "1"]),
               let n = StatusText.int(r.stdout, "emitted"), n >= 3 { break }
            usleep(200_000)
        }
        p.signal(SIGTERM)
        let status = p.wait(timeout: 60)
        XCTAssertEqual(status, 0, "stdout:\n\(p.stdout)\nstderr:\n\(p.stderr)")
        let total = p.summary("total")
        XCTAssertGreaterThanOrEqual(Summary.int(total, "delivered") ?? 0, 3, p.stdout)
        XCTAssertEqual(Summary.int(total, "unaccounted"), 0, "in-flight patches drained: \(p.stdout)")
        let index = try String(contentsOfFile: dir.appendingPathComponent("out/patches.tsv").path, encoding: .utf8)
        XCTAssertEqual(index.split(separator: "\n").count, (Summary.int(total, "delivered") ?? 0) + 1, "the writer flushed")
    }

    func testSlowWriterBlocksUpstreamAndKeepsMemoryBounded() throws {
        func run(_ patches: Int) throws -> (peak: Int, loaderBlocked: Double, stdout: String) {
            let dir = try TestConfigs.tempDirectory("slow")
            let config = try TestConfigs.write(TestConfigs.graph(base: TestConfigs.randomBasePort(), tcp: false,
                                                                 outDir: dir.appendingPathComponent("out").path,
                                                                 hwm: 1, writerDelayMs: 60), in: dir)
            let p = try TumordProcess(["run", "--config", config, "--max-patches", "\(patches)"], name: "run", currentDirectory: dir)
            var peak = 0
            while p.isRunning {
                peak = max(peak, p.peakRSS ?? 0)
                usleep(50_000)
            }
            XCTAssertEqual(p.wait(timeout: 1), 0, p.stderr)
            XCTAssertEqual(Summary.int(p.summary("total"), "unaccounted"), 0, p.stdout)
            return (peak, Summary.double(p.summary("loader"), "blocked_s") ?? 0, p.stdout)
        }
        let short = try run(15)
        let long = try run(75)
        let patchBytes = 96 * 96 * 96 * 6
        print("peak RSS: 15 patches \(short.peak / 1_000_000) MB, 75 patches \(long.peak / 1_000_000) MB")
        XCTAssertGreaterThan(short.peak, 0)
        // 60 more patches through a writer that takes 60 ms each: with bounded queues the peak
        // does not grow with the count (unbounded queues would hold ~60 more patches, 320 MB;
        // allocator noise between runs has been up to 80 MB here).
        XCTAssertLessThan(long.peak - short.peak, 30 * patchBytes, "peak RSS grows with the patch count")
        XCTAssertGreaterThan(long.loaderBlocked, 0.5, "the loader waited on the slow writer:\n\(long.stdout)")
    }
}

enum StatusText {
    /// Reads `key: N` from `tumord status` output.
    static func int(_ text: String, _ key: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix("\(key): ") {
            return Int(line.dropFirst(key.count + 2))
        }
        return nil
    }
}
