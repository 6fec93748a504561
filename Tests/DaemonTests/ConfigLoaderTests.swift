import Foundation
import XCTest

/// Config errors through the real binary (`tumord check-config`): every bad key or value is an
/// error naming its key path, and the shipped configs are valid.
final class ConfigLoaderTests: XCTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func write(_ yaml: String) throws -> String {
        let path = NSTemporaryDirectory() + "tumord-config-\(UUID().uuidString).yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let minimal = """
        pipeline: [loader, cropper, writer]
        stages:
          loader: {threads: 1}
          cropper: {input: "inproc://c.in"}
          writer: {input: "inproc://w.in", hwm: 3}
        """

    func check(_ yaml: String) throws -> TumordBinary.Result {
        try TumordBinary.run(["check-config", "--config", try write(yaml)])
    }

    func assertRejected(_ yaml: String, keyPath: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try check(yaml)
        XCTAssertNotEqual(r.status, 0, "accepted a bad config: \(r.stdout)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains("config key '\(keyPath)'"), "error should name \(keyPath): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "error should mention '\(mentions)': \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, file: file, line: line)
    }

    func testMinimalConfigIsValid() throws {
        let r = try check(Self.minimal)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("pipeline: loader -> cropper -> writer"), r.stdout)
    }

    func testShippedConfigsAreValid() throws {
        for name in ["default", "cluster", "difftumor", "train"] {
            let path = Self.packageRoot.appendingPathComponent("conf/\(name).yaml").path
            let r = try TumordBinary.run(["check-config", "--config", path])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
        }
    }

    func testUnknownKeysNameTheirPath() throws {
        try assertRejected(Self.minimal + "\nsede: 3\n", keyPath: "sede", mentions: "unknown key")
        try assertRejected(Self.minimal.replacingOccurrences(of: "hwm: 3", with: "hwm: 3, replicaz: 2"),
                           keyPath: "stages.writer.replicaz", mentions: "unknown key")
        try assertRejected(Self.minimal + "\ndata: {phantom: {cases: 2, sed: 1}}\n", keyPath: "data.phantom.sed", mentions: "unknown key")
        try assertRejected(Self.minimal + "\nstages2: {}\n", keyPath: "stages2", mentions: "unknown key")
    }

    func testBadValuesNameTheirPath() throws {
        try assertRejected(Self.minimal.replacingOccurrences(of: "hwm: 3", with: "hwm: lots"),
                           keyPath: "stages.writer.hwm", mentions: "must be an integer")
        try assertRejected(Self.minimal.replacingOccurrences(of: "hwm: 3", with: "hwm: 0"),
                           keyPath: "stages.writer.hwm", mentions: "must be in 1...")
        try assertRejected(Self.minimal + "\nsynthesis: {engine: magic}\n", keyPath: "synthesis.engine", mentions: "procedural, diffusion")
        try assertRejected(Self.minimal + "\nsynthesis: {synthesize_probability: 1.5}\n",
                           keyPath: "synthesis.synthesize_probability", mentions: "must be in 0.0...1.0")
        try assertRejected(Self.minimal + "\nsynthesis: {tumor_types: {tiny: 0.5, small: 0.4}}\n",
                           keyPath: "synthesis.tumor_types", mentions: "add up to 1")
        try assertRejected(Self.minimal + "\ndata: {organ: lung}\n", keyPath: "data.organ", mentions: "liver, pancreas, kidney")
        try assertRejected(Self.minimal.replacingOccurrences(of: "inproc://c.in", with: "localhost:5000"),
                           keyPath: "stages.cropper.input", mentions: "tcp://")
        try assertRejected(Self.minimal.replacingOccurrences(of: "[loader, cropper, writer]", with: "[loader, croper, writer]"),
                           keyPath: "pipeline[1]", mentions: "unknown stage")
        try assertRejected(Self.minimal.replacingOccurrences(of: "cropper: {input: \"inproc://c.in\"}", with: "cropper: {threads: 2}"),
                           keyPath: "stages.cropper.input", mentions: "missing")
        try assertRejected(Self.minimal + "\nsynthesis: {engine: diffusion}\n", keyPath: "models.autoencoder", mentions: "required")
        try assertRejected("pipeline: [loader, cropper\n", keyPath: "(syntax)", mentions: "YAML")
    }

    func testMissingFileIsAClearError() throws {
        let r = try TumordBinary.run(["check-config", "--config", "/nonexistent/tumord.yaml"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/nonexistent/tumord.yaml"), r.stderr)
    }
}
