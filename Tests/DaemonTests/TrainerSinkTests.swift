import Foundation
import XCTest

/// The trainer as the pipeline's sink: trains on every delivered patch, reports its loss,
/// checkpoints at the end of the stream, and a second run resumes from that checkpoint.
final class TrainerSinkTests: XCTestCase {
    func config(_ dir: URL) -> String {
        """
        seed: 3
        pipeline: [loader, cropper, encoder, sampler, blender, trainer]
        runtime: {status_interval_s: 1, idle_timeout_s: 1, drain_timeout_s: 60}
        data: {source: phantom, phantom: {cases: 1, seed: 3, shape: [128, 112, 112]}, organ: liver, patches_per_case: 8}
        synthesis: {engine: procedural, synthesize_probability: 0.5}
        trainer: {out_dir: "\(dir.appendingPathComponent("runs").path)", batch_size: 2, checkpoint_every: 100, channels: [4, 8], warmup_steps: 1, total_steps: 50}
        stages:
          loader: {}
          cropper: {input: "inproc://c"}
          encoder: {input: "inproc://e"}
          sampler: {input: "inproc://s"}
          blender: {input: "inproc://b"}
          trainer: {input: "inproc://t"}
        """
    }

    func testTrainerTrainsCheckpointsAndResumes() throws {
        let dir = try TestConfigs.tempDirectory("trainer")
        let path = try TestConfigs.write(config(dir), in: dir)
        let first = try TumordProcess(["run", "--config", path, "--max-patches", "3"], name: "run", currentDirectory: dir)
        XCTAssertEqual(first.wait(timeout: 150), 0, "\(first.stdout)\n\(first.stderr)")
        let t = first.summary("trainer")
        XCTAssertEqual(Summary.int(t, "trained_patches"), 3, first.stdout)
        XCTAssertEqual(Summary.int(t, "steps"), 2, "batch 2: one full batch and the partial last one: \(first.stdout)")
        XCTAssertEqual(Summary.int(t, "checkpoints"), 1, "a checkpoint at the end of the stream")
        XCTAssertTrue(first.stdout.contains("| loss "), "status lines show the loss: \(first.stdout)")
        for gauge in ["| step ", "| patches_per_s ", "| synthetic_share ", "| real_share "] {
            XCTAssertTrue(first.stdout.contains(gauge), "status lines show \(gauge): \(first.stdout)")
        }
        let synthetic = Summary.int(t, "synthetic_patches") ?? -1
        XCTAssertTrue((0...3).contains(synthetic), "synthetic_patches \(synthetic): \(first.stdout)")
        XCTAssertEqual(Summary.int(first.summary("total"), "unaccounted"), 0)
        let runs = dir.appendingPathComponent("runs")
        XCTAssertTrue(FileManager.default.fileExists(atPath: runs.appendingPathComponent("step-00000002/model.safetensors").path),
                      "\((try? FileManager.default.contentsOfDirectory(atPath: runs.path)) ?? [])")

        let second = try TumordProcess(["run", "--config", path, "--max-patches", "2"], name: "run", currentDirectory: dir)
        XCTAssertEqual(second.wait(timeout: 150), 0, "\(second.stdout)\n\(second.stderr)")
        XCTAssertEqual(Summary.int(second.summary("trainer"), "steps"), 3, "resumed at step 2, one more step: \(second.stdout)")
    }
}
