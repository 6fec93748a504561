import Foundation
import XCTest
import Kernels

/// Schedules, the 4-step ancestral DDPM (early model), DDIM S=10/50 (noearly model) and the
/// end-to-end early synthesis chain, all loaded through the pickle reader.
final class DiffusionGoldenTests: XCTestCase {
    static let early: Result<GaussianDiffusion, Error> = Result { try GaussianDiffusion(path: Fixtures.difftumor("diffusion_early.pt")) }
    static let noearly: Result<GaussianDiffusion, Error> = Result { try GaussianDiffusion(path: Fixtures.difftumor("diffusion_noearly.pt")) }
    static let vqgan: Result<VQGAN3D, Error> = Result {
        try VQGAN3D(stateDict: try TorchCheckpoint(path: Fixtures.difftumor("autoencoder.ckpt")).modelStateDict())
    }

    func testCosineSchedulesMatchReferenceAndCheckpointBuffers() throws {
        let g = try Fixtures.golden
        for (T, model) in [(4, try Self.early.get()), (200, try Self.noearly.get())] {
            let s = DiffusionSchedule.cosine(timesteps: T)
            let fields: [(String, [Float])] = [
                ("betas", s.betas), ("alphas_cumprod", s.alphasCumprod), ("posterior_variance", s.posteriorVariance),
                ("posterior_log_variance_clipped", s.posteriorLogVarianceClipped),
                ("posterior_mean_coef1", s.posteriorMeanCoef1), ("posterior_mean_coef2", s.posteriorMeanCoef2),
            ]
            for (name, v) in fields {
                assertClose(Tensor(shape: [T], data: v), try g.tensor("schedule.T\(T).\(name)"), rel: 1e-6, "T\(T) \(name)")
            }
            XCTAssertEqual(model.schedule.timesteps, T)
            assertClose(Tensor(shape: [T], data: model.schedule.alphasCumprod), Tensor(shape: [T], data: s.alphasCumprod), rel: 1e-6, "buffers T\(T)")
        }
        // The numbers quoted in difftumor.md §3.
        let s4 = DiffusionSchedule.cosine(timesteps: 4)
        XCTAssertEqual(s4.betas[0], 0.152988, accuracy: 1e-6)
        XCTAssertEqual(s4.posteriorVariance[3], 0.85565, accuracy: 1e-5)
    }

    func testDDIMTimestepsAndAlphas() throws {
        let g = try Fixtures.golden
        let s = try Self.noearly.get().schedule
        for S in [10, 50] {
            let (ts, a, ap) = s.ddim(steps: S)
            let ref = try Safetensors.readInt64(path: Fixtures.difftumor("golden.safetensors"), key: "ddim.S\(S).timesteps")
            XCTAssertEqual(ts.map(Int64.init), ref.values, "S=\(S) timesteps")
            XCTAssertEqual(a, try g.tensor("ddim.S\(S).alphas").scalars, "S=\(S) alphas")
            XCTAssertEqual(ap, try g.tensor("ddim.S\(S).alphas_prev").scalars, "S=\(S) alphas_prev")
        }
        XCTAssertEqual(s.ddim(steps: 50).timesteps.last, 197)
    }

    func testFourStepDDPMChain() throws {
        let g = try Fixtures.golden
        let model = try Self.early.get()
        var after: [Int: Tensor] = [:]
        let out = model.sampleDDPM(xT: try g.tensor("ddpm.x_T"), cond: try g.tensor("ddpm.cond"),
                                   noise: { t in (try? g.tensor("ddpm.noise.t\(t)")) ?? Tensor(zeros: [0]) },
                                   step: { t, x in after[t] = x })
        for t in [3, 2, 1, 0] {
            assertClose(after[t]!, try g.tensor("ddpm.x.after_t\(t)"), rel: 1e-4, "after t\(t)")
        }
        assertClose(out, try g.tensor("ddpm.output"), rel: 1e-4, "ddpm.output")
    }

    func testDDIM10Steps() throws {
        let g = try Fixtures.golden
        let out = try Self.noearly.get().sampleDDIM(xT: try g.tensor("ddim.x_T"), cond: try g.tensor("ddim.cond"), steps: 10)
        assertClose(out, try g.tensor("ddim.S10.output"), rel: 1e-4, "ddim S10")
    }

    func testDDIM50Steps() throws {
        let g = try Fixtures.golden
        let out = try Self.noearly.get().sampleDDIM(xT: try g.tensor("ddim.x_T"), cond: try g.tensor("ddim.cond"), steps: 50)
        assertClose(out, try g.tensor("ddim.S50.output"), rel: 1e-3, "ddim S50")
    }

    /// synth.*: encode the masked real-CT crop, build the condition, 4 DDPM steps, decode.
    func testEndToEndEarlySynthesis() throws {
        let g = try Fixtures.golden
        let engine = DiffTumorEngine(autoencoder: try Self.vqgan.get(), early: try Self.early.get(), noearly: nil)
        let cond = engine.condition(ct: try g.tensor("synth.ct"), mask: try g.tensor("synth.tumor_mask"))
        assertClose(cond, try g.tensor("synth.cond"), rel: 1e-5, "synth.cond")
        let latent = engine.sampleEarly(cond: try g.tensor("synth.cond"), xT: try g.tensor("synth.x_T"),
                                        noise: { t in (try? g.tensor("synth.noise.t\(t)")) ?? Tensor(zeros: [0]) })
        let decoded = engine.decodeNetworkLayout(latent: latent)
        assertClose(decoded, try g.tensor("synth.sample_decoded"), rel: 1e-4, "synth.sample_decoded")
        // Layout round trip.
        let p = DiffTumorLayout.toPipeline(decoded)
        XCTAssertEqual(DiffTumorLayout.toNetwork(p).scalars, decoded.scalars)
    }
}
