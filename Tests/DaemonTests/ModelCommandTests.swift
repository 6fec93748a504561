import Foundation
import XCTest
import Kernels

/// `tumord model inspect|convert|eval` on the golden fixtures.
final class ModelCommandTests: XCTestCase {
    static var fixtures: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("../shared/fixtures/difftumor").standardized.path
    }

    func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tumord-model-\(ProcessInfo.processInfo.processIdentifier)-\(name)").path
    }

    func testInspectReportsArchitecture() throws {
        let r = try TumordBinary.run(["model", "inspect", Self.fixtures + "/diffusion_noearly.pt"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Unet3D(dim=24, dims=[24, 48, 96, 192]"), r.stdout)
        XCTAssertTrue(r.stdout.contains("T=200"), r.stdout)
    }

    func testEvalEncodeAndQuantizeMatchGolden() throws {
        let g = try Safetensors.read(path: Self.fixtures + "/golden.safetensors")
        let out = temporary("encode.safetensors")
        defer { try? FileManager.default.removeItem(atPath: out) }
        var r = try TumordBinary.run(["model", "eval", "--checkpoint", Self.fixtures + "/autoencoder.ckpt", "--component", "encode",
                                      "--input", Self.fixtures + "/golden.safetensors", "--input-prefix", "vqgan.encode.", "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let z = try Safetensors.read(path: out).tensor("output")
        let ref = try g.tensor("vqgan.encode.output")
        XCTAssertEqual(z.shape, ref.shape)
        let err = zip(z.scalars, ref.scalars).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            / ref.scalars.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        XCTAssertLessThan(err, 1e-5)

        // quantize reads `latent`: convert writes a file we can feed back.
        let latentFile = temporary("latent.safetensors")
        defer { try? FileManager.default.removeItem(atPath: latentFile) }
        try Safetensors.write([.init("latent", ref)], to: latentFile)
        r = try TumordBinary.run(["model", "eval", "--checkpoint", Self.fixtures + "/autoencoder.ckpt", "--component", "quantize",
                                  "--input", latentFile, "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let idx = try Safetensors.read(path: out)
        XCTAssertEqual(idx.entry("indices")?.dtype, .int64)
        XCTAssertEqual(try idx.tensor("indices").scalars, try g.tensor("vqgan.quantize.indices").scalars)
    }

    func testConvertWritesInferenceTensors() throws {
        let out = temporary("convert.safetensors")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try TumordBinary.run(["model", "convert", Self.fixtures + "/autoencoder.ckpt", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try Safetensors.read(path: out)
        let b = try Safetensors.read(path: Self.fixtures + "/autoencoder.safetensors")
        for k in b.keys { XCTAssertEqual(try a.tensor(k).scalars, try b.tensor(k).scalars, k) }
        XCTAssertFalse(a.keys.contains { $0.hasPrefix("image_discriminator.") })
    }

    func testBadInputsGiveClearErrors() throws {
        var r = try TumordBinary.run(["model", "inspect", "/nonexistent/file.pt"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/nonexistent/file.pt"), r.stderr)
        r = try TumordBinary.run(["model", "eval", "--checkpoint", Self.fixtures + "/diffusion_early.pt", "--component", "unet",
                                  "--input", Self.fixtures + "/golden.safetensors", "--output", "/tmp/x.safetensors"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--timestep"), r.stderr)
        r = try TumordBinary.run(["model", "eval", "--checkpoint", Self.fixtures + "/autoencoder.ckpt", "--component", "encode",
                                  "--input", Self.fixtures + "/golden.safetensors", "--output", "/tmp/x.safetensors"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("input"), r.stderr)
    }
}
