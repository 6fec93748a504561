import ArgumentParser
import Foundation
import Imaging

/// The phantom generator of the Imaging module (`TumorD.Phantom` is the command).
typealias PhantomGenerator = Phantom

extension TumorD {
    struct Phantom: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the built-in procedural abdominal CT phantom (ct.nii.gz, label.nii.gz) at 1 mm.")

        @Option(help: "Output folder (created if missing).")
        var out: String

        @Option(help: "Seed: the same seed gives the same bytes.")
        var seed: UInt64 = 0

        @Option(help: "Grid size X,Y,Z in 1 mm voxels.")
        var shape: String = PhantomGenerator.defaultShape.map(String.init).joined(separator: ",")

        func parsedShape() throws -> [Int] {
            let parts = shape.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 3, let s = parts as? [Int], s.allSatisfy({ (16...1024).contains($0) }) else {
                throw ValidationError("--shape must be three sizes in 16...1024 separated by commas, got \(shape)")
            }
            return s
        }

        func validate() throws { _ = try parsedShape() }

        func run() throws {
            let dims = try parsedShape()
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                throw ImagingError(.writeFailed, path: out, "cannot create the output folder (\(error.localizedDescription))")
            }
            let (ct, labels) = PhantomGenerator.generate(seed: seed, shape: dims)
            let ctPath = (out as NSString).appendingPathComponent("ct.nii.gz")
            let labelPath = (out as NSString).appendingPathComponent("label.nii.gz")
            try NIfTI.write(ct, to: ctPath, as: .int16)
            try NIfTI.write(labels, to: labelPath)
            print("wrote \(ctPath) and \(labelPath): \(dims.map(String.init).joined(separator: " x ")) at 1 mm, seed \(seed)")
        }
    }
}
