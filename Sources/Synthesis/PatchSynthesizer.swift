import Imaging
import Kernels

/// Which texture engine paints the tumor.
public enum SynthesisEngine: String, CaseIterable, Sendable {
    /// SyntheticTumors' rule-based texture (no weights). Default of the built-in configuration.
    case procedural
    /// DiffTumor: VQ-GAN + latent diffusion (needs checkpoints and the networks module).
    case diffusion
}

/// A crop together with what the cropper decided: the output of the cropper stage.
public struct PlannedPatch {
    public var seed: UInt64
    public var organ: Organ
    /// The crop (CT in [0,1], label 0/1).
    public var patch: CropPatch
    /// The tumor mask when the patch was chosen for synthesis, else nil.
    public var tumor: TumorMask?

    public var isSynthesized: Bool { tumor != nil }
}

/// A finished patch: CT and label after synthesis (label 2 = tumor), with the draws recorded.
public struct SynthesizedPatch {
    public var seed: UInt64
    public var organ: Organ
    public var ct: Tensor
    public var label: MaskGrid
    public var origin: [Int]
    public var tumor: TumorMask?
    public var procedural: ProceduralRecord?
    /// Blur sigma of the diffusion blender (liver/kidney).
    public var blendSigma: Double?
}

/// The synthesis of one patch from one seed, as the pipeline's stages run it:
/// `plan` is the cropper stage (crop rule, decision, tumor type, mask: stream `.cropper`);
/// `paintProcedural` is the procedural engine, `blendDecoded` the diffusion blender (both on
/// stream `.engine`, so the geometry of a seed does not depend on the engine).
public struct PatchSynthesizer {
    public var organ: Organ
    public var policy: SynthesisPolicy
    public var patchSize: Int

    public init(organ: Organ, policy: SynthesisPolicy = .reference, patchSize: Int = Synthesis.patchSize) {
        self.organ = organ
        self.policy = policy
        self.patchSize = patchSize
    }

    /// Crops and decides. `forced` skips the synthesis coin and uses this size class (or, for
    /// `.some(nil)`, a policy draw of the type): used by `tumord synth`.
    /// Draw order on the cropper stream: crop tries, the decision coin (unless forced), the type
    /// draws, then the geometry.
    public func plan(ct: Tensor, organMask: MaskGrid, healthy: Bool, seed: UInt64,
                     forced: TumorSizeClass?? = nil) throws -> PlannedPatch {
        try plan(source: try prepare(ct: ct, organMask: organMask), healthy: healthy, seed: seed, forced: forced)
    }

    /// The per-volume part of cropping; reuse it for several patches of one volume.
    public func prepare(ct: Tensor, organMask: MaskGrid) throws -> CropSource {
        try cropper.prepare(ct: ct, label: organMask)
    }

    public var cropper: OrganCropper { OrganCropper(foregroundRadius: organ.foregroundRadius, patchSize: patchSize) }

    /// `plan` on a prepared volume.
    public func plan(source: CropSource, healthy: Bool, seed: UInt64,
                     forced: TumorSizeClass?? = nil) throws -> PlannedPatch {
        var rng = SynthRandom(seed: seed, stream: .cropper)
        let patch = try cropper.crop(source, healthy: healthy, rng: &rng)
        let sizeClass: TumorSizeClass?
        switch forced {
        case .none: sizeClass = policy.decide(healthy: healthy, rng: &rng)
        case .some(.none): sizeClass = policy.drawSizeClass(rng: &rng)
        case .some(.some(let c)): sizeClass = c
        }
        var tumor: TumorMask? = nil
        if let sizeClass, patch.label.voxels.contains(where: { $0 != 0 }) {
            tumor = try TumorGeometry(organ: organ).generate(organMask: patch.label, sizeClass: sizeClass, rng: &rng)
        }
        return PlannedPatch(seed: seed, organ: organ, patch: patch, tumor: tumor)
    }

    /// The procedural engine: paints the planned tumor (no-op for patches not synthesized).
    public func paintProcedural(_ planned: PlannedPatch) -> SynthesizedPatch {
        guard let tumor = planned.tumor else { return unchanged(planned) }
        var rng = SynthRandom(seed: planned.seed, stream: .engine)
        let (ct, record) = ProceduralEngine.paint(ct: planned.patch.ct, organ: planned.patch.label,
                                                  tumor: tumor.mask, rng: &rng)
        return SynthesizedPatch(seed: planned.seed, organ: organ, ct: ct,
                                label: Blender.updateLabel(organ: planned.patch.label, tumor: tumor.mask),
                                origin: planned.patch.origin, tumor: tumor, procedural: record, blendSigma: nil)
    }

    /// The diffusion blender: `decoded` is the decoder output in [-1, 1], either (X, Y, Z) or in
    /// the network layout (…, Z, X, Y) with `networkLayout: true`.
    public func blendDecoded(_ planned: PlannedPatch, decoded: Tensor, networkLayout: Bool) -> SynthesizedPatch {
        guard let tumor = planned.tumor else { return unchanged(planned) }
        var rng = SynthRandom(seed: planned.seed, stream: .engine)
        let sigma = Blender.drawSigma(&rng)
        let sample = networkLayout ? Blender.fromNetworkLayout(decoded) : decoded
        let (ct, label) = Blender.blend(ct: planned.patch.ct, organ: planned.patch.label, tumor: tumor.mask,
                                        sample: sample, organType: organ, sigma: sigma)
        return SynthesizedPatch(seed: planned.seed, organ: organ, ct: ct, label: label,
                                origin: planned.patch.origin, tumor: tumor, procedural: nil,
                                blendSigma: organ == .pancreas ? nil : sigma)
    }

    func unchanged(_ p: PlannedPatch) -> SynthesizedPatch {
        SynthesizedPatch(seed: p.seed, organ: organ, ct: p.patch.ct, label: p.patch.label,
                         origin: p.patch.origin, tumor: nil, procedural: nil, blendSigma: nil)
    }
}
