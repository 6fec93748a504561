import XCTest

/// `tumord run --help` against a stored copy (STYLE §18): a changed option or help text shows up
/// here and in docs/daemon.md together.
final class RunHelpTests: XCTestCase {
    static let expected = #"""
OVERVIEW: Run the whole pipeline in this process.

Stops by itself after --max-patches (the graph drains, exit 0) or on
SIGINT/SIGTERM (the loader stops, the other stages drain and flush, exit 0).

USAGE: tumord run --config <config> [--max-patches <max-patches>] [--log-level <log-level>] [--metrics <metrics>]

OPTIONS:
  --config <config>       Pipeline config (YAML), e.g. conf/default.yaml.
  --max-patches <max-patches>
                          Stop the loader after this many patches; the graph
                          then drains and exits 0.
  --log-level <log-level> Log level: trace, debug, info, notice, warning,
                          error, critical. (default: notice)
  --metrics <metrics>     Serve Prometheus metrics of this process at
                          http://HOST:PORT/metrics (e.g. 127.0.0.1:9464).
  --version               Show the version.
  -h, --help              Show help information.

"""#

    func testRunHelpMatchesStoredCopy() throws {
        let r = try TumordBinary.run(["run", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stdout, Self.expected + "\n")
    }

    func testStageRejectsUnknownStageName() throws {
        let r = try TumordBinary.run(["stage", "mixer", "--config", "conf/default.yaml"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("unknown stage 'mixer'"), r.stderr)
    }
}
