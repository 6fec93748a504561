import ArgumentParser
import Foundation
import Imaging
import Kernels

/// `tumord predict`: segments one CT with a trained U-Net, as the reference's validation does:
/// RAS, 1 mm, HU window [-175, 250] → [0, 1], sliding window 96³ (overlap 0.5, Gaussian
/// blending), argmax, and the labels mapped back (nearest) onto the input's grid and affine.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Segment a CT (0 background, 1 organ, 2 tumor) with a trained U-Net.")

    @OptionGroup var model: SegmentationModelOptions
    @Option(help: "Input CT (.nii or .nii.gz, HU).") var ct: String
    @Option(help: "Output label map (.nii.gz), written on the CT's grid with its affine.") var out: String

    func run() throws {
        let segmenter = try model.load()
        let volume = try NIfTI.readVolume(ct)
        let labels = segmenter.segment(volume)
        try NIfTI.write(labels, to: out)
        let counts = (0..<segmenter.unet.config.outChannels).map { c in labels.labels.reduce(0) { $0 + ($1 == UInt8(c) ? 1 : 0) } }
        print("wrote \(out): shape \(labels.shape), voxels per class \(counts)")
    }
}

/// Options shared by `predict` and `eval`: the model and the sliding window.
struct SegmentationModelOptions: ParsableArguments {
    @Option(help: "Model: a trainer checkpoint folder, a .safetensors state dict, or a MONAI UNet .pt/.pth (state dict, possibly under 'state_dict' or 'net').")
    var model: String
    @Option(help: "Sliding-window size per axis (a multiple of 16 for the reference U-Net).") var roi: Int = 96
    @Option(help: "Sliding-window overlap in [0, 1).") var overlap: Double = 0.5
    @Option(help: "Threads for the convolutions.") var threads: Int = 2

    func validate() throws {
        guard (0..<1).contains(overlap) else { throw ValidationError("--overlap must be in [0, 1), got \(overlap)") }
        guard roi > 0 else { throw ValidationError("--roi must be positive, got \(roi)") }
    }

    func load() throws -> Segmenter {
        KernelContext.threads = threads
        let unet = try SegmentationModelLoader.load(model)
        guard roi % unet.config.sizeMultiple == 0 else {
            throw ValidationError("--roi \(roi) must be a multiple of \(unet.config.sizeMultiple) for this U-Net")
        }
        return Segmenter(unet: unet, window: SlidingWindow(roiSize: [roi, roi, roi], overlap: overlap))
    }
}

/// Loads a U-Net from any of the formats TumorStream meets.
enum SegmentationModelLoader {
    static func load(_ path: String) throws -> UNet {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ValidationError("model \(path) does not exist")
        }
        if isDir.boolValue { return try SegmentationTrainer(resumingFrom: URL(fileURLWithPath: path)).model }
        let dict: StateDict
        if path.hasSuffix(".safetensors") {
            dict = try Safetensors.read(path: path)
        } else {
            let ckpt = try TorchCheckpoint(path: path)
            if let net = ckpt.value(at: ["net"]), net.asDict != nil { dict = ckpt.stateDict(of: net) } else { dict = try ckpt.modelStateDict() }
        }
        // DataParallel checkpoints prefix every key with "module.".
        let strip = dict.keys.allSatisfy { $0.hasPrefix("module.") }
        var shapes: [String: [Int]] = [:]
        for k in dict.keys { shapes[strip ? String(k.dropFirst(7)) : k] = dict.shape(k) }
        var unet = UNet(config: try UNetConfig.infer(fromShapes: shapes))
        var tensors: [String: Tensor] = [:]
        for k in dict.keys { tensors[strip ? String(k.dropFirst(7)) : k] = try dict.tensor(k) }
        try unet.load(stateDict: tensors)
        return unet
    }
}

/// Runs a U-Net over whole CT volumes.
struct Segmenter {
    var unet: UNet
    var window: SlidingWindow

    /// Labels on the CT's own grid.
    func segment(_ ct: Volume) -> LabelVolume {
        let iso = ct.reoriented(to: "RAS").resampled(spacing: [1, 1, 1]).windowed()
        let logits = window.infer(volume: iso.voxels, classes: unet.config.outChannels) { unet.predict($0) }
        let labels = LabelVolume(labels: SlidingWindow.argmax(logits), shape: iso.shape, affine: iso.affine)
        return Segmenter.nearest(labels, onto: ct.shape, affine: ct.affine)
    }

    /// Nearest-neighbour transfer of a label map onto another grid of the same world space
    /// (voxels outside the source grid get 0).
    static func nearest(_ src: LabelVolume, onto shape: [Int], affine: Affine) -> LabelVolume {
        guard let inv = src.affine.inverse else { return LabelVolume(labels: [UInt8](repeating: 0, count: shape.reduce(1, *)), shape: shape, affine: affine) }
        let m = inv * affine  // target voxel index → source voxel index
        var out = [UInt8](repeating: 0, count: shape.reduce(1, *))
        let s = src.shape
        for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<shape[2] {
            let (x, y, z) = (Double(i), Double(j), Double(k))
            let a = Int((m[0, 0] * x + m[0, 1] * y + m[0, 2] * z + m[0, 3]).rounded())
            let b = Int((m[1, 0] * x + m[1, 1] * y + m[1, 2] * z + m[1, 3]).rounded())
            let c = Int((m[2, 0] * x + m[2, 1] * y + m[2, 2] * z + m[2, 3]).rounded())
            guard a >= 0, a < s[0], b >= 0, b < s[1], c >= 0, c < s[2] else { continue }
            out[(i * shape[1] + j) * shape[2] + k] = src.labels[(a * s[1] + b) * s[2] + c]
        }}}
        return LabelVolume(labels: out, shape: shape, affine: affine)
    }
}
