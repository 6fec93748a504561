import ArgumentParser
import Foundation
import Imaging

/// `tumord eval`: predicts each case and scores organ (1) and tumor (2) DSC and NSD at 2 mm on
/// the label's native grid and spacing, per case and as the mean over cases (NaN cases, where
/// a class is absent from both, are left out of the mean, as nanmean does). With an organ
/// pseudo-label (`--organ-pseudo`, `--organ-pseudo-dir`) the prediction is masked as the
/// reference's `validation.py` does: organ = pseudo-label, tumor = predicted tumor ∧ pseudo-label.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Predict and score cases: per-case and mean DSC and NSD (2 mm) for organ and tumor.")

    @OptionGroup var model: SegmentationModelOptions
    @Option(help: "CT of one case.") var ct: String?
    @Option(help: "Reference label of that case: 0 background, 1 organ, 2 tumor (kidney: 3 = cyst counts as organ).") var label: String?
    @Option(help: "Manifest of cases (Imaging's format: name ct label organs status); the label column is read as above.")
    var manifest: String?
    @Option(help: "Organ: liver, pancreas or kidney.") var organ: String = "liver"
    @Option(help: "Also write per-case results to this CSV.") var csv: String?
    @Option(help: "NSD tolerance in mm.") var tolerance: Double = 2
    @Option(name: .customLong("organ-pseudo"),
            help: "Organ pseudo-label of the --ct case (nonzero = organ, on the label's grid): applied as the reference's validation.py does.")
    var organPseudo: String?
    @Option(name: .customLong("organ-pseudo-dir"),
            help: "Folder of organ pseudo-labels for a --manifest, one <case>.nii.gz per case (the reference's organ_pseudo_swin_new/<organ>/).")
    var organPseudoDir: String?

    func validate() throws {
        guard (ct != nil && label != nil) != (manifest != nil) else {
            throw ValidationError("give either --ct and --label, or --manifest")
        }
        if organPseudo != nil && manifest != nil { throw ValidationError("--organ-pseudo is for --ct; use --organ-pseudo-dir with --manifest") }
        if organPseudoDir != nil && manifest == nil { throw ValidationError("--organ-pseudo-dir is for --manifest; use --organ-pseudo with --ct") }
        guard ["liver", "pancreas", "kidney"].contains(organ) else { throw ValidationError("--organ must be liver, pancreas or kidney, got \(organ)") }
    }

    func run() throws {
        var cases: [(String, String, String)] = []
        var pseudoPaths: [String: String] = [:]
        if let ct, let label {
            let name = URL(fileURLWithPath: ct).lastPathComponent
            cases = [(name, ct, label)]
            if let organPseudo { pseudoPaths[name] = organPseudo }
        }
        if let manifest {
            for c in try DatasetManifest.read(manifest).cases {
                guard case let .multiLabel(path, _) = c.labels else {
                    throw ValidationError("manifest case \(c.name) has no single label file; eval needs one")
                }
                cases.append((c.name, c.ctPath, path))
                if let organPseudoDir { pseudoPaths[c.name] = URL(fileURLWithPath: organPseudoDir).appendingPathComponent("\(c.name).nii.gz").path }
            }
        }
        let segmenter = try model.load()
        var rows: [[Double]] = []
        var lines = ["case,organ_dsc,organ_nsd,tumor_dsc,tumor_nsd"]
        print("case\torgan DSC\torgan NSD\ttumor DSC\ttumor NSD")
        for (name, ctPath, labelPath) in cases {
            let (volume, truth) = try NIfTI.readPair(ct: ctPath, label: labelPath)
            var reference = truth.labels
            if organ == "kidney" { reference = reference.map { $0 == 3 ? 1 : $0 } }
            var pred = segmenter.segment(volume).labels
            if let pseudoPath = pseudoPaths[name] {
                pred = try EvalCommand.applyOrganPseudo(prediction: pred, pseudoPath: pseudoPath, grid: truth)
            }
            let m = SegmentationMetrics.evaluate(label: reference, prediction: pred, dims: truth.shape,
                                                 spacingMM: truth.spacing, classes: [1, 2], toleranceMM: tolerance)
            let row = [m[0].dsc, m[0].nsd, m[1].dsc, m[1].nsd]
            rows.append(row)
            print(([name] + row.map(MetricsCommand.format)).joined(separator: "\t"))
            lines.append(([name] + row.map(MetricsCommand.format)).joined(separator: ","))
        }
        let mean = (0..<4).map { k -> Double in
            let v = rows.map { $0[k] }.filter { !$0.isNaN }
            return v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
        }
        print((["mean"] + mean.map(MetricsCommand.format)).joined(separator: "\t"))
        lines.append((["mean"] + mean.map(MetricsCommand.format)).joined(separator: ","))
        if let csv { try (lines.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8) }
    }

    /// The reference's final evaluation (`validation.py`): the organ channel is replaced by the
    /// pseudo-label, and tumor = predicted tumor ∧ pseudo-label organ.
    static func applyOrganPseudo(prediction: [UInt8], pseudoPath: String, grid: LabelVolume) throws -> [UInt8] {
        let pseudo = try NIfTI.readLabels(pseudoPath)
        guard pseudo.shape == grid.shape else {
            throw ValidationError("organ pseudo-label \(pseudoPath) has shape \(pseudo.shape), the label \(grid.shape)")
        }
        return zip(prediction, pseudo.labels).map { p, o in o == 0 ? 0 : (p == 2 ? 2 : 1) }
    }
}
