import ArgumentParser
import Foundation
import Kernels

extension TumorD.Model {
    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a checkpoint's model tensors (state_dict, or ema for diffusion files) to safetensors.")

        @Argument(help: "A .ckpt/.pt (PyTorch zip) or .safetensors file.")
        var file: String

        @Argument(help: "The .safetensors file to write.")
        var output: String

        @Flag(help: "Keep training-only tensors (discriminators, perceptual network, codebook EMA statistics).")
        var keepTraining = false

        func run() throws {
            let sd = try ModelFiles.stateDict(path: file)
            var items: [Safetensors.Item] = []
            for k in sd.keys {
                if !keepTraining, ["image_discriminator.", "video_discriminator.", "perceptual_model."].contains(where: { k.hasPrefix($0) || k.contains("." + $0) }) {
                    continue
                }
                let e = sd.entry(k)!
                let integer = [.int64, .int32, .int16, .int8, .uint8, .bool].contains(e.dtype)
                items.append(.init(k, try sd.tensor(k), asInt64: integer))
            }
            try Safetensors.write(items, to: output, metadata: ["format": "pt", "source": (file as NSString).lastPathComponent])
            print("wrote \(items.count) tensors to \(output)")
        }
    }
}
