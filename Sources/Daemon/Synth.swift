import ArgumentParser
import Foundation
import Imaging
import Kernels
import Synthesis

/// `tumord synth`: offline synthesis into one scan, writing NIfTI (per patch or whole scan)
/// and an optional preview PNG. Reproducible: patch i uses seed patchSeed(run: S, index: i).
struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Synthesize tumors into one healthy CT and write the result as NIfTI (and a preview PNG).",
        discussion: """
        The scan is preprocessed like the reference (RAS, 1 mm, HU window [-175, 250]); each patch is a \
        96³ crop by the STEP3 rule with a tumor forced into it. Per-patch output (default): \
        patch_NNN_ct.nii.gz (HU, float32) and patch_NNN_label.nii.gz (0 background, 1 organ, 2 tumor) \
        on the 1-mm patch grid. With --whole-scan: ct.nii.gz and label.nii.gz on the input's own grid \
        (input HU except where synthesis changed the scan). Each patch's seed and draws go to synth.json.
        """)

    @Option(help: "CT NIfTI (.nii or .nii.gz), in HU.") var ct: String
    @Option(help: "Label NIfTI on the CT's grid.") var label: String
    @Option(help: "Organ: liver, pancreas or kidney.") var organ: String
    @Option(name: .customLong("label-ids"), parsing: .upToNextOption,
            help: "Label ids of the organ (default: TotalSegmentator's, liver 5, pancreas 7, kidney 2 3).")
    var labelIDs: [Int] = []
    @Option(help: "Texture engine: procedural (no weights) or diffusion (DiffTumor checkpoints).") var engine: String = "procedural"
    @Option(help: "Autoencoder checkpoint (.ckpt or .safetensors), for --engine diffusion.") var autoencoder: String?
    @Option(name: .customLong("diffusion-early"), help: "Early-tumor diffusion checkpoint ({organ}_early.pt).") var diffusionEarly: String?
    @Option(name: .customLong("diffusion-noearly"), help: "Medium/large diffusion checkpoint ({organ}_noearly.pt).") var diffusionNoearly: String?
    @Option(name: .customLong("ddim-steps"), help: "DDIM steps for medium/large tumors (reference: 50).") var ddimSteps: Int = 50
    @Option(name: .customLong("tumor-type"),
            help: "early, medium, large, or mix (the reference's draw: early 0.8, medium 0.1, large 0.1).")
    var tumorType: String = "mix"
    @Option(help: "Number of patches to synthesize.") var count: Int = 1
    @Option(help: "Run seed; patch i uses a seed derived from it and i.") var seed: UInt64
    @Option(help: "Output directory (created if missing).") var out: String
    @Flag(help: "Also write preview.png: axial, coronal and sagittal slices through each tumor.") var preview = false
    @Flag(name: .customLong("whole-scan"), help: "Write the whole scan on the input grid instead of per-patch files.")
    var wholeScan = false

    func validate() throws {
        guard let o = Organ(rawValue: organ), Organ.tumorOrgans.contains(o) else {
            throw ValidationError("--organ must be liver, pancreas or kidney, got '\(organ)'")
        }
        guard SynthesisEngine(rawValue: engine) != nil else {
            throw ValidationError("--engine must be procedural or diffusion, got '\(engine)'")
        }
        guard tumorType == "mix" || TumorType(rawValue: tumorType) != nil else {
            throw ValidationError("--tumor-type must be early, medium, large or mix, got '\(tumorType)'")
        }
        guard count >= 1 && count <= 1000 else { throw ValidationError("--count must be in 1...1000, got \(count)") }
        guard labelIDs.allSatisfy({ (1...255).contains($0) }) else {
            throw ValidationError("--label-ids must be label values in 1...255, got \(labelIDs)")
        }
        if engine == "diffusion" {
            guard autoencoder != nil, diffusionEarly != nil || diffusionNoearly != nil else {
                throw ValidationError("the diffusion engine needs checkpoints: --autoencoder and --diffusion-early and/or --diffusion-noearly")
            }
        }
    }

    func run() throws {
        let organ = Organ(rawValue: organ)!
        let engineKind = SynthesisEngine(rawValue: engine)!
        let ids: [UInt8] = labelIDs.isEmpty ? OrganMap.totalSegmentator.allIDs(of: organ) : labelIDs.map { UInt8($0) }
        let (ctVolume, labels) = try NIfTI.readPair(ct: ct, label: label)
        let organLabel = labels.mask(of: Set(ids))
        guard organLabel.labels.contains(1) else {
            throw SynthCommandError("\(label): no voxel has the \(organ) label ids \(ids.map(Int.init)); pass --label-ids")
        }
        var diffusion: DiffTumorEngine? = nil
        if engineKind == .diffusion {
            diffusion = try DiffTumorEngine(autoencoderPath: autoencoder!, earlyPath: diffusionEarly, noearlyPath: diffusionNoearly)
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)

        var scan = try ScanSynthesis(ct: ctVolume, organLabel: organLabel, organ: organ)
        let synthesizer = PatchSynthesizer(organ: organ)
        var records: [[String: Any]] = []
        var previewPatches: [(Tensor, MaskGrid, [[Int]])] = []
        for i in 0..<count {
            let patchSeed = SynthRandom.patchSeed(run: seed, index: UInt64(i))
            var typeRNG = SynthRandom(seed: patchSeed, stream: .cropper)
            let sizeClass: TumorSizeClass? = tumorType == "mix" ? nil
                : SynthesisPolicy.reference.drawSizeClass(for: TumorType(rawValue: tumorType)!, rng: &typeRNG)
            let plan = try scan.plan(synthesizer, seed: patchSeed, sizeClass: sizeClass)
            guard let tumor = plan.tumor else {
                throw SynthCommandError("patch \(i): the crop holds no \(organ) voxel")
            }
            let result: SynthesizedPatch
            switch engineKind {
            case .procedural:
                result = synthesizer.paintProcedural(plan)
            case .diffusion:
                result = try diffuse(plan, tumor: tumor, engine: diffusion!, synthesizer: synthesizer)
            }
            scan.apply(result)
            // The patch label as the scan now has it (tumors of earlier overlapping patches stay 2).
            var merged = result
            merged.label = scan.labelPatch(origin: result.origin, size: result.label.size)
            let tumorVoxels = merged.label.voxels.filter { $0 == 2 }.count
            var record: [String: Any] = [
                "patch": i, "seed": String(patchSeed), "origin": merged.origin, "size_class": tumor.sizeClass.rawValue,
                "tumor_voxels": tumorVoxels, "crop_attempts": plan.patch.attempts,
                "tumors": tumor.tumors.map { ["radii": $0.radii, "sigma": $0.sigma, "center": $0.center] },
                "organ_intersection_skipped": tumor.skippedOrganIntersection, "engine": engineKind.rawValue,
            ]
            if let p = result.procedural {
                record["procedural"] = ["blur_sigma": p.blurSigma, "difference_hu": p.differenceHU, "sigma_a": p.sigmaA, "sigma_b": p.sigmaB]
            }
            if let s = result.blendSigma { record["blend_sigma"] = s }
            records.append(record)
            if !wholeScan {
                let name = String(format: "patch_%03d", i)
                let affine = scan.patchAffine(origin: merged.origin)
                try NIfTI.write(ScanSynthesis.toHU(Volume(voxels: merged.ct, affine: affine)),
                                to: "\(out)/\(name)_ct.nii.gz", as: .float32)
                try NIfTI.write(LabelVolume(labels: merged.label.voxels, shape: merged.label.size.dims, affine: affine),
                                to: "\(out)/\(name)_label.nii.gz")
            }
            let centers = tumor.tumors.compactMap { PreviewImage.viewCenter(near: $0.center, label: merged.label) }
            previewPatches.append((merged.ct, merged.label, centers))
            print("patch \(i): seed \(patchSeed) \(tumor.sizeClass) ×\(tumor.tumors.count), \(tumorVoxels) tumor voxels at origin \(merged.origin)")
        }
        if wholeScan {
            let (wct, wlabel) = try scan.wholeScanOnInputGrid()
            try NIfTI.write(wct, to: "\(out)/ct.nii.gz", as: .float32)
            try NIfTI.write(wlabel, to: "\(out)/label.nii.gz")
        }
        if preview {
            var blocks: [PreviewImage] = []
            for (ct, label, centers) in previewPatches where !centers.isEmpty {
                blocks.append(PreviewImage.render(ct: ct, label: label, centers: centers))
            }
            let png = stack(blocks).png
            try Data(png).write(to: URL(fileURLWithPath: "\(out)/preview.png"))
        }
        let json = try JSONSerialization.data(withJSONObject: [
            "ct": ct, "label": label, "organ": organ.rawValue, "label_ids": ids.map(Int.init), "seed": String(seed),
            "tumor_type": tumorType, "output": wholeScan ? "whole-scan" : "per-patch", "patches": records,
        ] as [String: Any], options: [.prettyPrinted, .sortedKeys])
        try json.write(to: URL(fileURLWithPath: "\(out)/synth.json"))
        print("wrote \(wholeScan ? "ct.nii.gz, label.nii.gz" : "\(count) patch pair(s)")\(preview ? ", preview.png" : ""), synth.json to \(out)")
    }

    /// The DiffTumor path: condition, sample (early: 4-step DDPM; medium/large: DDIM), decode, blend.
    func diffuse(_ plan: PlannedPatch, tumor: TumorMask, engine: DiffTumorEngine,
                 synthesizer: PatchSynthesizer) throws -> SynthesizedPatch {
        let dims = [1, 1] + plan.patch.ct.shape
        let mask = Tensor(shape: dims, data: tumor.mask.voxels.map { $0 != 0 ? 1 : 0 })
        let cond = engine.condition(ct: plan.patch.ct.reshaped(dims), mask: mask)
        let noiseSeed = SynthRandom.patchSeed(run: plan.seed, index: 0xD1FF)
        let latent: Tensor
        if tumor.sizeClass.tumorType == .early {
            guard engine.early != nil else { throw SynthCommandError("an early tumor needs --diffusion-early") }
            latent = engine.sampleEarly(cond: cond, seed: noiseSeed)
        } else {
            guard engine.noearly != nil else { throw SynthCommandError("a \(tumor.sizeClass) tumor needs --diffusion-noearly") }
            latent = engine.sampleDDIM(cond: cond, seed: noiseSeed, steps: ddimSteps)
        }
        let decoded = engine.decode(latent: latent).reshaped(plan.patch.ct.shape)
        return synthesizer.blendDecoded(plan, decoded: decoded, networkLayout: false)
    }

    func stack(_ images: [PreviewImage]) -> PreviewImage {
        let width = images.map(\.width).max() ?? 1
        let height = max(1, images.map(\.height).reduce(0, +))
        var rgb = [UInt8](repeating: 24, count: width * height * 3)
        var top = 0
        for im in images {
            for y in 0..<im.height {
                let src = y * im.width * 3, dst = ((top + y) * width) * 3
                rgb.replaceSubrange(dst..<(dst + im.width * 3), with: im.rgb[src..<(src + im.width * 3)])
            }
            top += im.height
        }
        return PreviewImage(width: width, height: height, rgb: rgb)
    }
}

struct SynthCommandError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = "tumord synth: " + d }
}
