import Foundation
import Imaging
import XCTest

/// The neural path through the daemon: `tumord run` with the diffusion engine on the fixture
/// checkpoints (the real DiffTumor architecture and file formats, random weights): VQ-GAN encoder,
/// 4-step DDPM sampler, decoder + blend, on one early-tumor patch.
final class DiffusionRunTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../shared/fixtures/difftumor").standardizedFileURL

    func testDiffusionEngineSynthesizesAPatchThroughTheDaemon() throws {
        let ckpt = Self.fixtures.appendingPathComponent("autoencoder.ckpt").path
        try XCTSkipUnless(FileManager.default.fileExists(atPath: ckpt), "fixtures not found at \(Self.fixtures.path)")
        let dir = try TestConfigs.tempDirectory("diffusion")
        let base = TestConfigs.randomBasePort()
        let out = dir.appendingPathComponent("out")
        let f = Self.fixtures.path
        let config = """
        seed: 5
        pipeline: [loader, cropper, encoder, sampler, blender, writer]
        runtime: {status_interval_s: 5, idle_timeout_s: 2, drain_timeout_s: 300, linger_ms: 5000}
        data: {source: phantom, phantom: {cases: 1, seed: 3, shape: [128, 112, 112]}, organ: liver, patches_per_case: 4}
        synthesis: {engine: diffusion, synthesize_probability: 1.0, tumor_types: {tiny: 0.5, small: 0.5, medium: 0, large: 0}}
        models: {autoencoder: "\(f)/autoencoder.ckpt", diffusion_early: "\(f)/diffusion_early.pt", diffusion_noearly: "\(f)/diffusion_noearly.pt"}
        writer: {out_dir: "\(out.path)", compress: false}
        stages:
          loader: {threads: 1}
          cropper: {threads: 1, input: "inproc://cropper.in", hwm: 1, tap: "tcp://127.0.0.1:\(base + 21)", tap_hwm: 4, delay_ms: 3000}
          encoder: {threads: 2, input: "inproc://encoder.in", hwm: 1}
          sampler: {threads: 2, input: "inproc://sampler.in", hwm: 1}
          blender: {threads: 2, input: "inproc://blender.in", hwm: 1}
          writer: {threads: 1, input: "inproc://writer.in", hwm: 1, control: "tcp://127.0.0.1:\(base + 41)"}

        """
        let path = try TestConfigs.write(config, in: dir)
        // The cropper's tap keeps the patch as it was before synthesis. The tap connects first
        // (ZeroMQ retries the connection until the run binds the endpoint) and the cropper holds
        // the patch 3 s, so the subscription is in place before the patch passes.
        let before = dir.appendingPathComponent("before")
        let tap = try TumordProcess(["tap", "tcp://127.0.0.1:\(base + 21)", "--count", "1", "--save", before.path,
                                     "--timeout", "120"], name: "tap")
        let run = try TumordProcess(["run", "--config", path, "--max-patches", "1"], name: "run", currentDirectory: dir)
        XCTAssertEqual(run.wait(timeout: 240), 0, "tumord run exits 0:\n\(run.stdout)\n\(run.stderr)")
        XCTAssertEqual(tap.wait(timeout: 30), 0, "tap:\n\(tap.stdout)\n\(tap.stderr)\nrun:\n\(run.stdout)")
        let total = run.summary("total")
        XCTAssertEqual(Summary.int(total, "produced"), 1)
        XCTAssertEqual(Summary.int(total, "delivered"), 1, run.stdout)
        // Every neural stage worked on the patch (none passed it through).
        XCTAssertEqual(Summary.int(run.summary("encoder"), "encoded"), 1, run.stdout)
        XCTAssertEqual(Summary.int(run.summary("sampler"), "synthesized"), 1, run.stdout)
        XCTAssertEqual(Summary.int(run.summary("blender"), "blended"), 1, run.stdout)

        let id = "000000"
        let ct = try NIfTI.readVolume(out.appendingPathComponent("\(id)_ct.nii").path)
        let label = try NIfTI.readLabels(out.appendingPathComponent("\(id)_label.nii").path)
        XCTAssertEqual(ct.voxels.shape, [96, 96, 96])
        XCTAssertEqual(label.shape, [96, 96, 96])
        let tumor = label.labels.indices.filter { label.labels[$0] == 2 }
        XCTAssertFalse(tumor.isEmpty, "the blender set label 2 in the tumor")
        let index = try String(contentsOf: out.appendingPathComponent("patches.tsv"), encoding: .utf8)
        XCTAssertTrue(index.contains("\ttrue\ttiny\t") || index.contains("\ttrue\tsmall\t"), index)

        // The synthesized texture replaced the CT in the tumor: compare with the cropper's patch.
        let saved = try FileManager.default.contentsOfDirectory(atPath: before.path)
        let ctBefore = try XCTUnwrap(saved.first { $0.hasSuffix("_ct.nii.gz") }, "\(saved)")
        let orig = try NIfTI.readVolume(before.appendingPathComponent(ctBefore).path)
        XCTAssertEqual(orig.voxels.shape, [96, 96, 96])
        let a = ct.voxels.withUnsafeBufferPointer { Array($0) }, b = orig.voxels.withUnsafeBufferPointer { Array($0) }
        let changedInTumor = tumor.filter { abs(a[$0] - b[$0]) > 1e-4 }.count
        XCTAssertGreaterThan(changedInTumor, tumor.count / 2, "the tumor voxels carry the decoded texture")
        let outside = label.labels.indices.filter { label.labels[$0] == 0 }
        let changedFarAway = outside.filter { abs(a[$0] - b[$0]) > 1e-4 }.count
        XCTAssertLessThan(changedFarAway, outside.count / 4, "liver blending leaves most of the background alone")
        XCTAssertTrue(a.allSatisfy { $0.isFinite && $0 >= -1e-3 && $0 <= 1.001 }, "CT stays in [0, 1]")
    }
}
