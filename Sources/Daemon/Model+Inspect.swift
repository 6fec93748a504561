import ArgumentParser
import Foundation
import Kernels

extension TumorD.Model {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a checkpoint's tensors, dtypes and the inferred architecture.")

        @Argument(help: "A .ckpt/.pt (PyTorch zip) or .safetensors file.")
        var file: String

        @Flag(help: "Print every tensor (name, dtype, shape).")
        var tensors = false

        func run() throws {
            if !file.hasSuffix(".safetensors") {
                let ckpt = try TorchCheckpoint(path: file)
                if let root = ckpt.root.asDict {
                    print("top-level entries:")
                    for (k, v) in root.stringItems { print("  \(k): \(v.typeName)") }
                }
            }
            let sd = try ModelFiles.stateDict(path: file)
            for line in ModelFiles.describe(sd) { print(line) }
            if tensors {
                for k in sd.keys {
                    let e = sd.entry(k)!
                    print("\(k)\t\(e.dtype.rawValue)\t\(e.shape)")
                }
            }
        }
    }
}
