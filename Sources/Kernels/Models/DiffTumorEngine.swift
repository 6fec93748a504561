import Foundation

/// Axis orders of DiffTumor: the pipeline's volumes are (B, C, X, Y, Z); the networks see
/// (B, C, Z, X, Y) (`permute(0,1,-1,-3,-2)`), and decoded volumes go back with `permute(0,1,-2,-1,-3)`.
public enum DiffTumorLayout {
    /// (B, C, X, Y, Z) → (B, C, Z, X, Y).
    public static func toNetwork(_ x: Tensor) -> Tensor {
        precondition(x.rank == 5, "toNetwork wants (B, C, X, Y, Z), got \(x.shape)")
        let (B, C, X, Y, Z) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        var out = Tensor(uninitialized: [B, C, Z, X, Y])
        x.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for bc in 0..<(B * C) {
                    let sb = bc * X * Y * Z
                    for i in 0..<X { for j in 0..<Y { for k in 0..<Z {
                        d[sb + (k * X + i) * Y + j] = s[sb + (i * Y + j) * Z + k]
                    } } }
                }
            }
        }
        return out
    }

    /// (B, C, Z, X, Y) → (B, C, X, Y, Z).
    public static func toPipeline(_ x: Tensor) -> Tensor {
        precondition(x.rank == 5, "toPipeline wants (B, C, Z, X, Y), got \(x.shape)")
        let (B, C, Z, X, Y) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        var out = Tensor(uninitialized: [B, C, X, Y, Z])
        x.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for bc in 0..<(B * C) {
                    let sb = bc * X * Y * Z
                    for k in 0..<Z { for i in 0..<X { for j in 0..<Y {
                        d[sb + (i * Y + j) * Z + k] = s[sb + (k * X + i) * Y + j]
                    } } }
                }
            }
        }
        return out
    }
}

/// Seeded standard-normal noise (xoshiro256** + Box-Muller), reproducible from the patch seed.
public struct GaussianNoise {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        func splitmix(_ z: inout UInt64) -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var r = z
            r = (r ^ (r >> 30)) &* 0xBF58_476D_1CE4_E5B9
            r = (r ^ (r >> 27)) &* 0x94D0_49BB_1331_11EB
            return r ^ (r >> 31)
        }
        s = (splitmix(&z), splitmix(&z), splitmix(&z), splitmix(&z))
    }

    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// A tensor of N(0, 1) samples.
    public mutating func tensor(_ shape: [Int]) -> Tensor {
        var t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i < p.count {
                let u1 = (Double(next() >> 11) + 0.5) / 9007199254740992.0
                let u2 = Double(next() >> 11) / 9007199254740992.0
                let r = (-2 * Foundation.log(u1)).squareRoot()
                p[i] = Float(r * Foundation.cos(2 * Double.pi * u2))
                if i + 1 < p.count { p[i + 1] = Float(r * Foundation.sin(2 * Double.pi * u2)) }
                i += 2
            }
        }
        return t
    }
}

/// The DiffTumor synthesis engine: the encoder, the two samplers and the decoder that the
/// pipeline's encoder, sampler and blender stages call. Inputs and outputs of `condition(ct:mask:)`
/// and `decode(latent:)` are in the pipeline's (B, 1, X, Y, Z) layout; latents and conditions are
/// in the network layout (B, C, Z/4, X/4, Y/4).
public final class DiffTumorEngine {
    public let autoencoder: VQGAN3D
    /// T = 4 model, sampled with 4 ancestral DDPM steps (early tumors).
    public let early: GaussianDiffusion?
    /// T = 200 model, sampled with DDIM (medium and large tumors).
    public let noearly: GaussianDiffusion?

    public init(autoencoder: VQGAN3D, early: GaussianDiffusion?, noearly: GaussianDiffusion?) {
        self.autoencoder = autoencoder
        self.early = early
        self.noearly = noearly
    }

    /// Loads the published files: the autoencoder `.ckpt` and the `{organ}_early.pt` / `_noearly.pt` files.
    public convenience init(autoencoderPath: String, earlyPath: String?, noearlyPath: String?) throws {
        let vq = try VQGAN3D(stateDict: try TorchCheckpoint.orSafetensors(path: autoencoderPath))
        let e = try earlyPath.map { try GaussianDiffusion(stateDict: try TorchCheckpoint.orSafetensors(path: $0)) }
        let n = try noearlyPath.map { try GaussianDiffusion(stateDict: try TorchCheckpoint.orSafetensors(path: $0)) }
        self.init(autoencoder: vq, early: e, noearly: n)
    }

    /// ẑ = (z − e_min)/(e_max − e_min)·2 − 1 with the codebook's scalar min and max.
    public func normalize(_ z: Tensor) -> Tensor {
        let lo = autoencoder.codebookMin, range = autoencoder.codebookMax - autoencoder.codebookMin
        var out = z
        out.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = (p[i] - lo) / range * 2 - 1 } }
        return out
    }

    /// The inverse: ((ẑ + 1)/2)·(e_max − e_min) + e_min.
    public func denormalize(_ z: Tensor) -> Tensor {
        let lo = autoencoder.codebookMin, range = autoencoder.codebookMax - autoencoder.codebookMin
        var out = z
        out.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = (p[i] + 1) / 2 * range + lo } }
        return out
    }

    /// The 9-channel condition of a patch: the normalised latent of ct·2−1 masked by (1 − mask),
    /// and nearest-downsampled 2·mask − 1. `ct` in [0, 1] and `mask` in {0, 1}, both (B, 1, X, Y, Z).
    public func condition(ct: Tensor, mask: Tensor) -> Tensor {
        precondition(ct.shape == mask.shape && ct.rank == 5, "condition: ct \(ct.shape) and mask \(mask.shape)")
        var masked = Tensor(uninitialized: ct.shape), m = Tensor(uninitialized: ct.shape)
        ct.withUnsafeBufferPointer { c in
            mask.withUnsafeBufferPointer { k in
                masked.withUnsafeMutableBufferPointer { o in
                    m.withUnsafeMutableBufferPointer { mo in
                        for i in 0..<c.count {
                            o[i] = (c[i] * 2 - 1) * (1 - k[i])
                            mo[i] = k[i] * 2 - 1
                        }
                    }
                }
            }
        }
        let latent = normalize(autoencoder.encode(DiffTumorLayout.toNetwork(masked)))
        // Nearest resizing maps each axis independently, so it commutes with the axis permutation:
        // resize in the pipeline layout (X, Y, Z), then permute only the small latent-sized mask.
        let (lz, lx, ly) = (latent.shape[2], latent.shape[3], latent.shape[4])
        let cc = DiffTumorLayout.toNetwork(m.interpolateNearest(size: [lx, ly, lz]))
        return Tensor.concat([latent, cc], axis: 1)
    }

    /// Early tumor: 4 ancestral DDPM steps from x_T with the given per-step noise.
    public func sampleEarly(cond: Tensor, xT: Tensor, noise: (Int) -> Tensor) -> Tensor {
        guard let early else { preconditionFailure("sampleEarly: no early diffusion model loaded") }
        return early.sampleDDPM(xT: xT, cond: cond, noise: noise)
    }

    /// Early tumor with all noise drawn from `seed` (x_T first, then the noise of t = T−1 … 1).
    public func sampleEarly(cond: Tensor, seed: UInt64) -> Tensor {
        var rng = GaussianNoise(seed: seed)
        let shape = [cond.shape[0], autoencoder.architecture.embeddingDim] + Array(cond.shape.dropFirst(2))
        let xT = rng.tensor(shape)
        return sampleEarly(cond: cond, xT: xT, noise: { _ in rng.tensor(shape) })
    }

    /// Medium/large tumor: deterministic DDIM with `steps` steps (50 in the reference) from x_T.
    public func sampleDDIM(cond: Tensor, xT: Tensor, steps: Int = 50) -> Tensor {
        guard let noearly else { preconditionFailure("sampleDDIM: no noearly diffusion model loaded") }
        return noearly.sampleDDIM(xT: xT, cond: cond, steps: steps)
    }

    public func sampleDDIM(cond: Tensor, seed: UInt64, steps: Int = 50) -> Tensor {
        var rng = GaussianNoise(seed: seed)
        let shape = [cond.shape[0], autoencoder.architecture.embeddingDim] + Array(cond.shape.dropFirst(2))
        return sampleDDIM(cond: cond, xT: rng.tensor(shape), steps: steps)
    }

    /// The decoded texture in the network layout (B, 1, Z, X, Y), values about [-1, 1]:
    /// denormalise, snap to the codebook, decode.
    public func decodeNetworkLayout(latent: Tensor) -> Tensor {
        autoencoder.decode(denormalize(latent), quantize: true)
    }

    /// The decoded texture in the pipeline layout (B, 1, X, Y, Z).
    public func decode(latent: Tensor) -> Tensor {
        DiffTumorLayout.toPipeline(decodeNetworkLayout(latent: latent))
    }
}

extension TorchCheckpoint {
    /// The model state dict of a PyTorch checkpoint, or the tensors of a `.safetensors` file.
    public static func orSafetensors(path: String) throws -> StateDict {
        if path.hasSuffix(".safetensors") { return try Safetensors.read(path: path) }
        return try TorchCheckpoint(path: path).modelStateDict()
    }
}
