import Stages
import XCTest

final class PipelineConfigTests: XCTestCase {
    static func config() -> PipelineConfig {
        var c = PipelineConfig()
        c.pipeline = [.loader, .cropper, .writer]
        var cropper = StageConfig()
        cropper.input = "inproc://cropper.in"
        var writer = StageConfig()
        writer.input = "inproc://writer.in"
        writer.replicas = 2
        c.stages = [.loader: StageConfig(), .cropper: cropper, .writer: writer]
        return c
    }

    func testValidConfig() throws {
        try Self.config().validate()
    }

    func testErrorsNameTheKey() {
        var c = Self.config()
        c.stages[.cropper]?.input = nil
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual(($0 as? ConfigError)?.keyPath, "stages.cropper.input") }

        c = Self.config()
        c.pipeline = [.cropper, .writer]
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual(($0 as? ConfigError)?.keyPath, "pipeline") }

        c = Self.config()
        c.stages[.cropper]?.tap = "tcp://127.0.0.1:7001"
        c.stages[.writer]?.control = "tcp://127.0.0.1:7000"  // replica 1 uses 7001 too
        XCTAssertThrowsError(try c.validate()) { error in
            XCTAssertTrue("\(error)".contains("7001"), "\(error)")
        }

        c = Self.config()
        c.synthesis.engine = .diffusion
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual(($0 as? ConfigError)?.keyPath, "models.autoencoder") }
    }

    func testGraphWiresEveryReplica() throws {
        let specs = try PipelineGraph.specs(Self.config(), selection: .all) { _, _ in .processor { _ in PassThroughProcessor() } }
        XCTAssertEqual(specs.map(\.name), ["loader", "cropper", "writer"])
        XCTAssertEqual(specs[1].output, "inproc://writer.in")
        XCTAssertEqual(specs[1].outputReplicas, 2)
        XCTAssertEqual(specs[2].replicas, [0, 1])
        XCTAssertNil(specs[2].output)

        let one = try PipelineGraph.specs(Self.config(), selection: .stage(.writer, replica: 1)) { _, _ in
            .processor { _ in PassThroughProcessor() }
        }
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(one[0].replicas, [1])
        // Replica processes drain by themselves: each sends its own markers and expects one from
        // every upstream replica.
        XCTAssertTrue(one[0].sendsEndOfStream)
        XCTAssertEqual(one[0].expectedEndOfStreams, Self.config().stage(.cropper).replicas)
        XCTAssertEqual(specs[1].expectedEndOfStreams, 1)
        XCTAssertThrowsError(try PipelineGraph.specs(Self.config(), selection: .stage(.writer, replica: 2)) { _, _ in
            .processor { _ in PassThroughProcessor() }
        })
    }

    func testMemoryBoundCountsHWMsPerSenderReceiverPair() {
        let c = Self.config()
        // loader→cropper: 1×1×(2+2) volumes; cropper→writer: 1×2×(2+2) patches;
        // in flight: loader 2 volumes, cropper 1 volume + 1 patch, writer 2 replicas × 2 patches.
        let bound = c.memoryBound(patchBytes: 10, volumeBytes: 1000)
        XCTAssertEqual(bound, 4 * 1000 + 8 * 10 + 2 * 1000 + (1000 + 10) + 2 * 20)
    }
}
