import Foundation
import XCTest

/// Paths of the shared real-CT files (relative to the package root, as HELPERS.md asks).
enum TestData {
    static var packageRoot: URL {
        // Tests/ImagingTests/TestData.swift -> package root
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static var totalSegmentator: URL {
        packageRoot.appendingPathComponent("../shared/data/totalsegmentator").standardizedFileURL
    }
    static var exampleCT: String { totalSegmentator.appendingPathComponent("example_ct.nii.gz").path }
    static var exampleSeg: String { totalSegmentator.appendingPathComponent("example_seg_fast_force_split.nii.gz").path }

    static func requireExampleData() throws {
        guard FileManager.default.fileExists(atPath: exampleCT) else {
            throw XCTSkip("shared data not found at \(exampleCT)")
        }
    }

    /// A fresh temporary directory, removed at the end of the test.
    static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }
}
