import Foundation
import XCTest

/// `tumord inspect` and `tumord phantom`, run as a process.
final class InspectCommandTests: XCTestCase {
    var shared: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("../shared/data/totalsegmentator").standardizedFileURL
    }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testInspectExampleWithLabel() throws {
        let ct = shared.appendingPathComponent("example_ct.nii.gz").path
        guard FileManager.default.fileExists(atPath: ct) else { throw XCTSkip("no shared data") }
        let r = try TumordBinary.run(["inspect", ct, "--label", shared.appendingPathComponent("example_seg_fast_force_split.nii.gz").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for s in ["122 x 101 x 112", "3 x 3 x 3 mm", "orientation  RAS", "int32", "-1207.0 .. 3382.0",
                  "1125.7", "44.5", "liver", "pancreas"] {
            XCTAssertTrue(r.stdout.contains(s), "missing \(s) in\n\(r.stdout)")
        }
    }

    func testPhantomSameSeedSameBytesAndInspectable() throws {
        let dir = try tempDir()
        let a = dir.appendingPathComponent("a").path, b = dir.appendingPathComponent("b").path
        for out in [a, b] {
            let r = try TumordBinary.run(["phantom", "--out", out, "--seed", "9", "--shape", "64,52,52"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        for f in ["ct.nii.gz", "label.nii.gz"] {
            let da = try Data(contentsOf: URL(fileURLWithPath: a + "/" + f)), db = try Data(contentsOf: URL(fileURLWithPath: b + "/" + f))
            XCTAssertEqual(da, db, f)
        }
        let r = try TumordBinary.run(["inspect", a + "/ct.nii.gz", "--label", a + "/label.nii.gz"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("64 x 52 x 52") && r.stdout.contains("liver") && r.stdout.contains("spleen"), r.stdout)
    }

    /// Every bad input: non-zero exit, the file named on stderr, no crash (a signal would show as status > 128).
    func testBadInputsExitNonZeroNamingTheFile() throws {
        let dir = try tempDir()
        let ok = dir.appendingPathComponent("ok")
        XCTAssertEqual(try TumordBinary.run(["phantom", "--out", ok.path, "--seed", "1", "--shape", "32,32,32"]).status, 0)
        let ct = ok.appendingPathComponent("ct.nii.gz").path
        let good = try Data(contentsOf: URL(fileURLWithPath: ct))

        let truncated = dir.appendingPathComponent("cut.nii.gz").path
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: truncated))
        let text = dir.appendingPathComponent("text.nii").path
        try "not an image".write(toFile: text, atomically: true, encoding: .utf8)
        let other = dir.appendingPathComponent("other")
        XCTAssertEqual(try TumordBinary.run(["phantom", "--out", other.path, "--seed", "1", "--shape", "32,32,40"]).status, 0)

        // Uncompressed copies with patched header fields.
        let plain = dir.appendingPathComponent("plain.nii").path
        XCTAssertEqual(try TumordBinary.run(["phantom", "--out", dir.appendingPathComponent("p").path, "--seed", "1",
                                             "--shape", "16,16,16"]).status, 0)
        let r0 = try TumordBinary.run(["inspect", dir.appendingPathComponent("p/ct.nii.gz").path])
        XCTAssertEqual(r0.status, 0, r0.stderr)
        let gz = dir.appendingPathComponent("p/ct.nii.gz").path
        let unz = Process()
        unz.executableURL = URL(fileURLWithPath: "/bin/sh")
        unz.arguments = ["-c", "gzip -dc '\(gz)' > '\(plain)'"]
        try unz.run(); unz.waitUntilExit()
        var bytes = try Data(contentsOf: URL(fileURLWithPath: plain))
        func patched(_ name: String, _ edits: [(Int, Int16)]) throws -> String {
            var d = bytes
            for (o, v) in edits { withUnsafeBytes(of: v.littleEndian) { d.replaceSubrange(o..<(o + 2), with: $0) } }
            let p = dir.appendingPathComponent(name).path
            try d.write(to: URL(fileURLWithPath: p))
            return p
        }
        let complex = try patched("complex.nii", [(70, 32), (72, 64)])
        let fourD = try patched("4d.nii", [(40, 4), (48, 3)])
        // NaN: float32 datatype with a NaN bit pattern in the first voxel.
        bytes.replaceSubrange(352..<356, with: [0x00, 0x00, 0xc0, 0x7f])
        bytes.append(Data(count: bytes.count - 352))  // float32 needs twice the int16 bytes
        let nan = try patched("nan.nii", [(70, 16), (72, 32)])

        let cases: [([String], String, String)] = [
            (["inspect", dir.appendingPathComponent("missing.nii.gz").path], "missing.nii.gz", "not found"),
            (["inspect", truncated], "cut.nii.gz", "truncated"),
            (["inspect", text], "text.nii", "not a NIfTI"),
            (["inspect", complex], "complex.nii", "unsupported datatype"),
            (["inspect", fourD], "4d.nii", "more than one volume"),
            (["inspect", nan], "nan.nii", "NaN"),
            (["inspect", ct, "--label", other.appendingPathComponent("label.nii.gz").path], "other/label.nii.gz", "grids differ"),
        ]
        for (args, file, problem) in cases {
            let r = try TumordBinary.run(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertLessThan(r.status, 128, "crashed? \(args)")
            XCTAssertTrue(r.stderr.contains(file) && r.stderr.contains(problem), "\(args): stderr was\n\(r.stderr)")
        }
    }
}
