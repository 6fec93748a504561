import ArgumentParser
import Foundation
import Imaging

/// `tumord metrics`: DSC and NSD (DeepMind surface Dice at 2 mm, label spacing) between two
/// label files on one grid.
struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "DSC and NSD (surface Dice at a tolerance, DeepMind semantics) of a predicted label map against a reference.")

    @Option(help: "Predicted label map (.nii/.nii.gz).") var pred: String
    @Option(help: "Reference label map on the same grid.") var label: String
    @Option(help: "Class values to score, comma-separated.") var classes: String = "1,2"
    @Option(help: "NSD tolerance in mm.") var tolerance: Double = 2

    func run() throws {
        let classValues = try MetricsCommand.parseClasses(classes)
        let p = try NIfTI.readLabels(pred), g = try NIfTI.readLabels(label)
        guard p.shape == g.shape, p.affine.isClose(to: g.affine, tolerance: 1e-3) else {
            throw ValidationError("\(pred) (shape \(p.shape)) and \(label) (shape \(g.shape)) are not on one grid")
        }
        let m = SegmentationMetrics.evaluate(label: g.labels, prediction: p.labels, dims: g.shape, spacingMM: g.spacing,
                                             classes: classValues, toleranceMM: tolerance)
        print("class\tDSC\tNSD@\(tolerance)mm")
        for c in m { print("\(c.classValue)\t\(MetricsCommand.format(c.dsc))\t\(MetricsCommand.format(c.nsd))") }
    }

    static func parseClasses(_ text: String) throws -> [UInt8] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap { UInt8($0) }
        guard !values.isEmpty, values.count == parts.count else { throw ValidationError("--classes must be integers 0...255, got \(text)") }
        return values
    }

    static func format(_ v: Double) -> String { v.isNaN ? "nan" : String(format: "%.4f", v) }
}
