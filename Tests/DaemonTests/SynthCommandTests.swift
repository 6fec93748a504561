import Foundation
import XCTest
import Imaging

/// `tumord synth` on the real TotalSegmentator example (liver 5, pancreas 7, kidneys 2 3).
final class SynthCommandTests: XCTestCase {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static var data: String { packageRoot.appendingPathComponent("../shared/data/totalsegmentator").standardized.path }

    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synth-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func requireData() throws {
        guard FileManager.default.fileExists(atPath: Self.data + "/example_ct.nii.gz") else { throw XCTSkip("no example CT at \(Self.data)") }
    }

    func synth(_ extra: [String], organ: String, out: String) throws -> TumordBinary.Result {
        try TumordBinary.run(["synth", "--ct", Self.data + "/example_ct.nii.gz",
                              "--label", Self.data + "/example_seg_fast_force_split.nii.gz",
                              "--organ", organ, "--out", out] + extra)
    }

    /// Whole scan: CT and label on the input grid (same shape and affine), tumor voxels (2)
    /// inside the liver (id 5), darker than before, everything else unchanged; the preview PNG
    /// is a valid PNG with red outline pixels.
    func testWholeScanLiverProcedural() throws {
        try requireData()
        let out = try tempDir()
        let r = try synth(["--seed", "7", "--count", "2", "--tumor-type", "medium", "--whole-scan", "--preview"], organ: "liver", out: out)
        XCTAssertEqual(r.status, 0, r.stderr)
        let (input, inputLabels) = try NIfTI.readPair(ct: Self.data + "/example_ct.nii.gz",
                                                      label: Self.data + "/example_seg_fast_force_split.nii.gz")
        let (ct, label) = try NIfTI.readPair(ct: out + "/ct.nii.gz", label: out + "/label.nii.gz")
        XCTAssertEqual(ct.shape, input.shape)
        XCTAssertTrue(ct.affine.isClose(to: input.affine, tolerance: 1e-5), "\(ct.affine) vs \(input.affine)")
        var tumor = 0, inside = 0, drop = 0.0, changedOutside = 0
        for i in 0..<label.labels.count {
            let before = input.voxels[flat: i], after = ct.voxels[flat: i]
            if label.labels[i] == 2 {
                tumor += 1
                if inputLabels.labels[i] == 5 { inside += 1 }
                drop += Double(before - after)
            } else {
                XCTAssertEqual(label.labels[i], inputLabels.labels[i] == 5 ? 1 : 0)
                if abs(before - after) > 60 && inputLabels.labels[i] != 5 { changedOutside += 1 }
            }
        }
        XCTAssertGreaterThan(tumor, 50, "medium tumors at 3 mm: a few hundred voxels")
        XCTAssertEqual(inside, tumor, "every tumor voxel lies in the liver")
        XCTAssertGreaterThan(drop / Double(tumor), 15, "the lesion is darker (mean HU drop)")
        XCTAssertEqual(changedOutside, 0)
        let png = try Data(contentsOf: URL(fileURLWithPath: out + "/preview.png"))
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/synth.json"))
        try checkWithNibabel(out + "/ct.nii.gz", expectedAffineOf: Self.data + "/example_ct.nii.gz")
    }

    /// Per patch, for each organ: 96³ patches on a 1-mm grid with labels 0/1/2 and a tumor;
    /// for the liver, the same seed writes the same bytes and another seed another tumor.
    func testPerPatchAllOrgansAndReproducible() throws {
        try requireData()
        for organ in ["liver", "pancreas", "kidney"] {
            let a = try tempDir(), b = try tempDir()
            for dir in organ == "liver" ? [a, b] : [a] {
                let r = try synth(["--seed", "3", "--count", "1", "--tumor-type", "early"], organ: organ, out: dir)
                XCTAssertEqual(r.status, 0, r.stderr)
            }
            let (ct, label) = try NIfTI.readPair(ct: a + "/patch_000_ct.nii.gz", label: a + "/patch_000_label.nii.gz")
            XCTAssertEqual(ct.shape, [96, 96, 96])
            XCTAssertEqual(ct.spacing.map { ($0 * 1000).rounded() / 1000 }, [1, 1, 1])
            XCTAssertTrue(label.labels.contains(2), "\(organ): tumor label present")
            XCTAssertTrue(label.labels.allSatisfy { $0 <= 2 })
            for name in ["patch_000_ct.nii.gz", "patch_000_label.nii.gz"] where organ == "liver" {
                let da = try Data(contentsOf: URL(fileURLWithPath: a + "/" + name))
                let db = try Data(contentsOf: URL(fileURLWithPath: b + "/" + name))
                XCTAssertEqual(da, db, "\(organ) \(name): same seed, same bytes")
            }
            guard organ == "liver" else { continue }
            let c = try tempDir()
            XCTAssertEqual(try synth(["--seed", "4", "--tumor-type", "early"], organ: organ, out: c).status, 0)
            let other = try NIfTI.readLabels(c + "/patch_000_label.nii.gz")
            XCTAssertNotEqual(other.labels, label.labels, "\(organ): another seed, another tumor")
        }
    }

    func testBadInputsGiveClearErrors() throws {
        try requireData()
        let out = try tempDir()
        var r = try synth(["--seed", "1"], organ: "spleen", out: out)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--organ must be liver, pancreas or kidney"), r.stderr)
        r = try synth(["--seed", "1", "--label-ids", "250"], organ: "liver", out: out)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("no voxel has the liver label ids [250]"), r.stderr)
        r = try synth(["--seed", "1", "--engine", "diffusion"], organ: "liver", out: out)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("the diffusion engine needs checkpoints"), r.stderr)
        r = try TumordBinary.run(["synth", "--ct", "/nonexistent.nii.gz", "--label", "/nonexistent.nii.gz",
                                  "--organ", "liver", "--seed", "1", "--out", out])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/nonexistent.nii.gz"), r.stderr)
    }

    /// nibabel's view of the output (skipped when python3 with nibabel is not installed).
    func checkWithNibabel(_ path: String, expectedAffineOf input: String) throws {
        let script = "import nibabel as n, numpy as np, sys; a=n.load(sys.argv[1]); b=n.load(sys.argv[2]); " +
            "print('same' if np.allclose(a.affine, b.affine, atol=1e-4) and a.shape == b.shape else 'differ')"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, path, input]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = Pipe()
        do { try p.run() } catch { return }
        let outData = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return }   // no python3/nibabel here
        XCTAssertEqual(String(decoding: outData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), "same")
    }
}
