import Foundation

/// The buffers of the reference `GaussianDiffusion` (cosine β schedule, s = 0.008, β clipped at 0.9999),
/// computed in Float64 and stored as Float32 exactly as its `register_buffer` does.
public struct DiffusionSchedule: Sendable {
    public let timesteps: Int
    public let betas: [Float]
    public let alphasCumprod: [Float]
    public let alphasCumprodPrev: [Float]
    public let sqrtRecipAlphasCumprod: [Float]
    public let sqrtRecipm1AlphasCumprod: [Float]
    public let posteriorVariance: [Float]
    public let posteriorLogVarianceClipped: [Float]
    public let posteriorMeanCoef1: [Float]
    public let posteriorMeanCoef2: [Float]

    /// Names of the buffers in a GaussianDiffusion state dict, in this struct's order.
    public static let bufferNames = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_recip_alphas_cumprod",
                                     "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                                     "posterior_mean_coef1", "posterior_mean_coef2"]

    /// The cosine schedule for `timesteps` steps.
    public static func cosine(timesteps T: Int, s: Double = 0.008) -> DiffusionSchedule {
        precondition(T >= 1, "cosine schedule needs at least one timestep")
        var ac = [Double](repeating: 0, count: T + 1)
        for i in 0...T {
            let x = Double(i) / Double(T)
            let c = Foundation.cos((x + s) / (1 + s) * Double.pi * 0.5)
            ac[i] = c * c
        }
        let a0 = ac[0]
        for i in 0...T { ac[i] /= a0 }
        var betas = [Double](repeating: 0, count: T)
        for i in 0..<T { betas[i] = min(max(1 - ac[i + 1] / ac[i], 0), 0.9999) }
        var cum = [Double](repeating: 0, count: T), prev = cum
        var p = 1.0
        for i in 0..<T { prev[i] = p; p *= (1 - betas[i]); cum[i] = p }
        func f(_ v: [Double]) -> [Float] { v.map { Float($0) } }
        var postVar = [Double](repeating: 0, count: T), logVar = postVar, coef1 = postVar, coef2 = postVar
        var recip = postVar, recipm1 = postVar
        for i in 0..<T {
            let b: Double = betas[i], c: Double = cum[i], pv: Double = prev[i]
            postVar[i] = b * (1 - pv) / (1 - c)
            logVar[i] = Foundation.log(max(postVar[i], 1e-20))
            coef1[i] = b * pv.squareRoot() / (1 - c)
            coef2[i] = (1 - pv) * (1 - b).squareRoot() / (1 - c)
            recip[i] = (1 / c).squareRoot()
            recipm1[i] = (1 / c - 1).squareRoot()
        }
        return DiffusionSchedule(
            timesteps: T, betas: f(betas), alphasCumprod: f(cum), alphasCumprodPrev: f(prev),
            sqrtRecipAlphasCumprod: f(recip), sqrtRecipm1AlphasCumprod: f(recipm1),
            posteriorVariance: f(postVar), posteriorLogVarianceClipped: f(logVar),
            posteriorMeanCoef1: f(coef1), posteriorMeanCoef2: f(coef2))
    }

    init(timesteps: Int, betas: [Float], alphasCumprod: [Float], alphasCumprodPrev: [Float], sqrtRecipAlphasCumprod: [Float],
         sqrtRecipm1AlphasCumprod: [Float], posteriorVariance: [Float], posteriorLogVarianceClipped: [Float],
         posteriorMeanCoef1: [Float], posteriorMeanCoef2: [Float]) {
        self.timesteps = timesteps
        self.betas = betas
        self.alphasCumprod = alphasCumprod
        self.alphasCumprodPrev = alphasCumprodPrev
        self.sqrtRecipAlphasCumprod = sqrtRecipAlphasCumprod
        self.sqrtRecipm1AlphasCumprod = sqrtRecipm1AlphasCumprod
        self.posteriorVariance = posteriorVariance
        self.posteriorLogVarianceClipped = posteriorLogVarianceClipped
        self.posteriorMeanCoef1 = posteriorMeanCoef1
        self.posteriorMeanCoef2 = posteriorMeanCoef2
    }

    /// The buffers as a checkpoint stores them (strict: all nine must be present with one length).
    public init(stateDict sd: StateDict) throws {
        guard let n = sd.shape("betas"), n.count == 1, n[0] >= 1 else {
            throw WeightsError(.missingKey, file: sd.file, "no 1-D tensor 'betas' (diffusion schedule)")
        }
        var v: [[Float]] = []
        for name in DiffusionSchedule.bufferNames { v.append(try sd.tensor(name, shape: [n[0]]).scalars) }
        self.init(timesteps: n[0], betas: v[0], alphasCumprod: v[1], alphasCumprodPrev: v[2], sqrtRecipAlphasCumprod: v[3],
                  sqrtRecipm1AlphasCumprod: v[4], posteriorVariance: v[5], posteriorLogVarianceClipped: v[6],
                  posteriorMeanCoef1: v[7], posteriorMeanCoef2: v[8])
    }

    /// DDIM (η = 0) parameters of the reference `DDIMSampler` with uniform spacing: timesteps
    /// `range(0, T, T/S) + 1`, ascending; α = ᾱ[t]; α_prev = [ᾱ[0]] + ᾱ[t[:-1]].
    public func ddim(steps S: Int) -> (timesteps: [Int], alphas: [Float], alphasPrev: [Float]) {
        precondition(S >= 1 && S <= timesteps, "DDIM steps \(S) must be in 1...\(timesteps)")
        let c = timesteps / S
        let ts = Array(stride(from: 0, to: timesteps, by: c)).map { $0 + 1 }.filter { $0 < timesteps }
        let alphas = ts.map { alphasCumprod[$0] }
        let prev = [alphasCumprod[0]] + ts.dropLast().map { alphasCumprod[$0] }
        return (ts, alphas, prev)
    }
}
