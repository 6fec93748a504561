import Foundation
import XCTest
import Kernels

/// Paths to the shared golden fixtures (`../shared/fixtures/difftumor` from the package root).
enum Fixtures {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static func difftumor(_ name: String) -> String {
        packageRoot.appendingPathComponent("../shared/fixtures/difftumor/\(name)").standardized.path
    }
    static var golden: StateDict {
        get throws { try Safetensors.read(path: difftumor("golden.safetensors")) }
    }
}

/// Relative error ‖a − b‖ / ‖b‖ after checking shapes (element counts) agree.
func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.count == b.count, "\(a.shape) vs \(b.shape)")
    var num = 0.0, den = 0.0
    a.withUnsafeBufferPointer { x in
        b.withUnsafeBufferPointer { y in
            for i in 0..<x.count {
                let d = Double(x[i]) - Double(y[i])
                num += d * d
                den += Double(y[i]) * Double(y[i])
            }
        }
    }
    return (num / max(den, 1e-300)).squareRoot()
}

func assertClose(_ a: Tensor, _ b: Tensor, rel: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): \(a.shape) vs \(b.shape)", file: file, line: line)
    guard a.count == b.count else { return }
    let e = relativeError(a, b)
    XCTAssertLessThanOrEqual(e, rel, "\(what): relative error \(e)", file: file, line: line)
}
