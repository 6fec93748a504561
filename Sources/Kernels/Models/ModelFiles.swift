import Foundation

/// Opening the reference's model files, whatever their container: a Lightning `.ckpt`, a diffusion
/// `.pt` (weights under `ema`), or a `.safetensors` file with the same key names.
public enum ModelFiles {
    /// The model state dict of a file (`state_dict` / `ema` / `model` of a PyTorch checkpoint, or all tensors of a safetensors file).
    public static func stateDict(path: String) throws -> StateDict {
        guard FileManager.default.fileExists(atPath: path) else { throw WeightsError(.io, file: path, "no such file") }
        if path.hasSuffix(".safetensors") { return try Safetensors.read(path: path) }
        return try TorchCheckpoint(path: path).modelStateDict()
    }

    /// The VQ-GAN of an autoencoder file, or the `vqgan.*` copy inside a diffusion file.
    public static func vqgan(_ sd: StateDict) throws -> VQGAN3D {
        if sd.contains("encoder.conv_first.conv.weight") { return try VQGAN3D(stateDict: sd) }
        let sub = sd.subdict(prefix: "vqgan.")
        if sub.contains("encoder.conv_first.conv.weight") { return try VQGAN3D(stateDict: sub) }
        throw WeightsError(.missingKey, file: sd.file, "no VQ-GAN weights ('encoder.conv_first.conv.weight' or 'vqgan.encoder.conv_first.conv.weight')")
    }

    /// The Unet3D of a diffusion file (`denoise_fn.*`) or of a bare Unet3D state dict.
    public static func unet(_ sd: StateDict) throws -> Unet3D {
        if sd.contains("denoise_fn.init_conv.weight") { return try Unet3D(stateDict: sd.subdict(prefix: "denoise_fn.")) }
        if sd.contains("init_conv.weight") { return try Unet3D(stateDict: sd) }
        throw WeightsError(.missingKey, file: sd.file, "no Unet3D weights ('denoise_fn.init_conv.weight' or 'init_conv.weight')")
    }

    /// A GaussianDiffusion (Unet3D + schedule buffers).
    public static func diffusion(_ sd: StateDict) throws -> GaussianDiffusion {
        GaussianDiffusion(denoiser: try unet(sd), schedule: try DiffusionSchedule(stateDict: sd))
    }

    /// A human-readable summary: counts, dtypes and every architecture that can be inferred.
    public static func describe(_ sd: StateDict) -> [String] {
        var lines: [String] = []
        var byType: [WeightDType: (Int, Int)] = [:]
        for k in sd.keys {
            let e = sd.entry(k)!
            let n = e.shape.reduce(1, *)
            let old = byType[e.dtype] ?? (0, 0)
            byType[e.dtype] = (old.0 + 1, old.1 + n)
        }
        lines.append("tensors: \(sd.keys.count)")
        for (t, (count, elements)) in byType.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            lines.append("  \(t.rawValue): \(count) tensors, \(elements) elements")
        }
        if let vq = try? vqgan(sd) { lines.append("autoencoder: \(vq.architecture)") }
        if let u = try? unet(sd) { lines.append("denoiser: \(u.architecture)") }
        if let s = try? DiffusionSchedule(stateDict: sd) { lines.append("diffusion schedule: T=\(s.timesteps)") }
        let training = sd.keys.filter { k in
            ["image_discriminator.", "video_discriminator.", "perceptual_model.", "codebook.N", "codebook.z_avg"].contains { k.hasPrefix($0) || k.contains("." + $0) }
        }
        if !training.isEmpty { lines.append("training-only tensors (ignored for inference): \(training.count)") }
        return lines
    }
}
