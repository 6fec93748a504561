import Foundation

/// A diffusion checkpoint of DiffTumor: the Unet3D denoiser (`denoise_fn.*`) and the schedule
/// buffers, with the reference's two samplers. Latents are in the normalised [-1, 1] space.
public final class GaussianDiffusion {
    public let denoiser: Unet3D
    public let schedule: DiffusionSchedule

    public init(denoiser: Unet3D, schedule: DiffusionSchedule) {
        self.denoiser = denoiser
        self.schedule = schedule
    }

    /// From a GaussianDiffusion state dict (the `ema` entry of `{organ}_early.pt` / `_noearly.pt`).
    /// The `vqgan.*` copy is ignored: the autoencoder comes from its own checkpoint.
    public convenience init(stateDict sd: StateDict) throws {
        let unetKeys = sd.subdict(prefix: "denoise_fn.")
        guard !unetKeys.keys.isEmpty else { throw WeightsError(.missingKey, file: sd.file, "no 'denoise_fn.*' tensors (not a GaussianDiffusion state dict)") }
        self.init(denoiser: try Unet3D(stateDict: unetKeys), schedule: try DiffusionSchedule(stateDict: sd))
    }

    public convenience init(path: String) throws {
        try self.init(stateDict: try TorchCheckpoint(path: path).modelStateDict())
    }

    /// One ancestral step `p_sample` at timestep t: x̂0 clamped to [-1, 1], posterior mean, and
    /// `exp(½ log σ²) · noise` for t > 0.
    public func ddpmStep(_ x: Tensor, cond: Tensor, t: Int, noise: Tensor?) -> Tensor {
        var out = x
        ddpmUpdate(&out, eps: denoiser(x, cond: cond, timesteps: [Float](repeating: Float(t), count: x.shape[0])), t: t, noise: noise)
        return out
    }

    /// The update of `p_sample` in place, given the denoiser's output `eps` at x and t.
    func ddpmUpdate(_ x: inout Tensor, eps: Tensor, t: Int, noise: Tensor?) {
        let s = schedule
        let (ra, rm1, c1, c2) = (s.sqrtRecipAlphasCumprod[t], s.sqrtRecipm1AlphasCumprod[t], s.posteriorMeanCoef1[t], s.posteriorMeanCoef2[t])
        let sd: Float = t > 0 ? Foundation.exp(0.5 * s.posteriorLogVarianceClipped[t]) : 0
        precondition(eps.count == x.count, "DDPM step: denoiser output \(eps.shape) for x \(x.shape)")
        precondition(t == 0 || noise?.count == x.count, "DDPM step t=\(t) needs noise of shape \(x.shape)")
        let zero = Tensor(zeros: [0])
        x.withUnsafeMutableBufferPointer { xp in
            eps.withUnsafeBufferPointer { ep in
                (t > 0 ? noise! : zero).withUnsafeBufferPointer { np in
                    for i in 0..<xp.count {
                        var x0 = ra * xp[i] - rm1 * ep[i]
                        x0 = min(max(x0, -1), 1)
                        let mean = c1 * x0 + c2 * xp[i]
                        xp[i] = t > 0 ? mean + sd * np[i] : mean
                    }
                }
            }
        }
    }

    /// The full ancestral chain (`p_sample_loop`) from x_T: `noise(t)` supplies the noise of step t > 0.
    /// x is updated in place; the timestep vector is built once, and so is the condition's share of the
    /// denoiser's init conv (`Unet3D.prepare(cond:)`).
    public func sampleDDPM(xT: Tensor, cond: Tensor, noise: (Int) -> Tensor, step: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        var x = xT
        var times = [Float](repeating: 0, count: x.shape[0])
        let prepared = denoiser.prepare(cond: cond)
        for t in stride(from: schedule.timesteps - 1, through: 0, by: -1) {
            for b in times.indices { times[b] = Float(t) }
            let eps = denoiser(x, prepared: prepared, timesteps: times)
            ddpmUpdate(&x, eps: eps, t: t, noise: t > 0 ? noise(t) : nil)
            step?(t, x)
        }
        return x
    }

    /// Deterministic DDIM (η = 0) over `steps` of the reference's uniform spacing; x is updated in place.
    /// The condition's share of the init conv is computed once (`Unet3D.prepare(cond:)`).
    public func sampleDDIM(xT: Tensor, cond: Tensor, steps: Int, step: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let (ts, alphas, prev) = schedule.ddim(steps: steps)
        var x = xT
        var times = [Float](repeating: 0, count: x.shape[0])
        let prepared = denoiser.prepare(cond: cond)
        for index in stride(from: ts.count - 1, through: 0, by: -1) {
            let t = ts[index]
            for b in times.indices { times[b] = Float(t) }
            let e = denoiser(x, prepared: prepared, timesteps: times)
            GaussianDiffusion.ddimUpdate(&x, eps: e, alpha: alphas[index], alphaPrev: prev[index])
            step?(t, x)
        }
        return x
    }

    /// The DDIM (η = 0) update in place: x̂0 = (x − √(1−ᾱ)·ε)/√ᾱ, x ← √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε.
    public static func ddimUpdate(_ x: inout Tensor, eps e: Tensor, alpha a: Float, alphaPrev ap: Float) {
        precondition(e.count == x.count, "DDIM step: denoiser output \(e.shape) for x \(x.shape)")
        let sqrtOneMinusA = (1 - a).squareRoot(), sqrtA = a.squareRoot()
        let dirCoef = (1 - ap - 0).squareRoot(), sqrtAp = ap.squareRoot()
        x.withUnsafeMutableBufferPointer { xp in
            e.withUnsafeBufferPointer { ep in
                for i in 0..<xp.count {
                    let x0 = (xp[i] - sqrtOneMinusA * ep[i]) / sqrtA
                    xp[i] = sqrtAp * x0 + dirCoef * ep[i]
                }
            }
        }
    }
}
