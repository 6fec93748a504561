import Foundation
import XCTest

/// `tumord tap`: a subscriber sees what a stage emits, including the last patch of a run that
/// shuts down right after emitting it.
final class TapCommandTests: XCTestCase {
    /// The cropper emits its only patch and then finishes at once (end of stream). Closing the
    /// tap with linger 0 used to drop that patch when ZeroMQ had not yet written it (7 of 30 runs
    /// from the shell); three runs here catch a regression more often than not.
    func testTapReceivesTheLastPatchOfAShortRun() throws {
        for attempt in 0..<3 {
            let dir = try TestConfigs.tempDirectory("tap-last")
            let port = TestConfigs.randomBasePort() + 21
            let config = """
            seed: \(11 + attempt)
            pipeline: [loader, cropper, encoder, sampler, blender, writer]
            runtime: {status_interval_s: 5, idle_timeout_s: 1, drain_timeout_s: 30, linger_ms: 1000}
            data: {source: phantom, phantom: {cases: 1, seed: 3, shape: [128, 112, 112]}, organ: liver, patches_per_case: 1}
            synthesis: {engine: procedural, synthesize_probability: 1.0, tumor_types: {tiny: 1, small: 0, medium: 0, large: 0}}
            writer: {out_dir: "\(dir.appendingPathComponent("out").path)", compress: false}
            stages:
              loader: {threads: 1}
              cropper: {threads: 1, input: "inproc://cropper.in", hwm: 1, tap: "tcp://127.0.0.1:\(port)", tap_hwm: 4, delay_ms: 1500}
              encoder: {threads: 1, input: "inproc://encoder.in", hwm: 1}
              sampler: {threads: 1, input: "inproc://sampler.in", hwm: 1}
              blender: {threads: 1, input: "inproc://blender.in", hwm: 1}
              writer: {threads: 1, input: "inproc://writer.in", hwm: 1}

            """
            let path = try TestConfigs.write(config, in: dir)
            // The tap connects first; ZeroMQ retries until the run binds, well within the cropper's 1.5 s.
            let tap = try TumordProcess(["tap", "tcp://127.0.0.1:\(port)", "--count", "1", "--timeout", "30"], name: "tap")
            let run = try TumordProcess(["run", "--config", path, "--max-patches", "1"], name: "run", currentDirectory: dir)
            XCTAssertEqual(run.wait(timeout: 60), 0, "run:\n\(run.stdout)\n\(run.stderr)")
            XCTAssertEqual(tap.wait(timeout: 30), 0, "attempt \(attempt): the tap got the run's only patch:\n\(tap.stdout)\n\(tap.stderr)")
            XCTAssertEqual(tap.stdout.split(separator: "\n").filter { $0.hasPrefix("patch ") }.count, 1, tap.stdout)
        }
    }

    func testTapWithoutAPublisherTimesOutWithExitCode2() throws {
        let port = TestConfigs.randomBasePort() + 99
        let tap = try TumordProcess(["tap", "tcp://127.0.0.1:\(port)", "--count", "1", "--timeout", "0.5"], name: "tap")
        XCTAssertEqual(tap.wait(timeout: 30), 2, tap.stderr)
        XCTAssertTrue(tap.stderr.contains("no patch within 0.5 s"), tap.stderr)
        XCTAssertFalse(tap.stderr.contains("ExitCode"), "the exit code is not reported as an error: \(tap.stderr)")
    }
}
