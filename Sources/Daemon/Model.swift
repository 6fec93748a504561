import ArgumentParser
import Foundation
import Kernels

extension TumorD {
    /// `tumord model inspect|convert|eval`: the DiffTumor checkpoints, read in Swift.
    struct Model: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inspect, convert and evaluate DiffTumor checkpoints (.ckpt, .pt, .safetensors).",
            subcommands: [Inspect.self, Convert.self, Eval.self])
    }
}

/// Errors of the model commands that are not weight-file errors.
struct ModelCommandError: Error, CustomStringConvertible {
    let description: String
}
