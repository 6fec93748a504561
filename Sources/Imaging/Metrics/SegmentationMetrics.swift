/// DSC and NSD of one class of a label map against the ground truth.
public struct ClassMetrics: Equatable, CustomStringConvertible {
    public var classValue: UInt8
    /// 2|P∩G| / (|P|+|G|); NaN when the class is absent from both.
    public var dsc: Double
    /// Surface Dice at the tolerance (DeepMind semantics); NaN when absent from both.
    public var nsd: Double

    public init(classValue: UInt8, dsc: Double, nsd: Double) {
        self.classValue = classValue; self.dsc = dsc; self.nsd = nsd
    }

    public var description: String { "class \(classValue): DSC \(dsc) NSD \(nsd)" }
}

/// Segmentation metrics on label maps [X, Y, Z] in C order (Imaging's `LabelVolume` layout),
/// as the reference's `validation.py` computes them: per-class DSC and DeepMind's surface Dice
/// at 2 mm with the label's spacing.
public enum SegmentationMetrics {
    public static let defaultToleranceMM = 2.0

    /// 2|P∩G| / (|P|+|G|); NaN when both masks are empty.
    public static func dice(label: [Bool], prediction: [Bool]) -> Double {
        precondition(label.count == prediction.count, "mask sizes \(label.count) and \(prediction.count) differ")
        var both = 0, sum = 0
        for i in 0..<label.count {
            if label[i] { sum += 1 }
            if prediction[i] { sum += 1; if label[i] { both += 1 } }
        }
        return sum == 0 ? .nan : 2 * Double(both) / Double(sum)
    }

    /// DSC and NSD for each class value in `classes` (default: organ 1 and tumor 2).
    public static func evaluate(label: [UInt8], prediction: [UInt8], dims: [Int], spacingMM: [Double],
                                classes: [UInt8] = [1, 2], toleranceMM: Double = defaultToleranceMM) -> [ClassMetrics] {
        precondition(label.count == prediction.count, "label has \(label.count) voxels, prediction \(prediction.count)")
        return classes.map { c in
            let g = label.map { $0 == c }, p = prediction.map { $0 == c }
            let sd = SurfaceDistances(label: g, prediction: p, dims: dims, spacingMM: spacingMM)
            return ClassMetrics(classValue: c, dsc: dice(label: g, prediction: p), nsd: sd.surfaceDice(toleranceMM: toleranceMM))
        }
    }
}

extension SegmentationMetrics {
    /// The reference's organ pseudo-label masking (`val_epoch`, `validation.py`): tumor (2)
    /// predictions where `organ` is 0 become background. `organ` is nonzero on the organ.
    public static func maskTumor(_ prediction: inout [UInt8], organ: [UInt8], tumor: UInt8 = 2) {
        precondition(prediction.count == organ.count, "maskTumor: prediction has \(prediction.count) voxels, organ mask \(organ.count)")
        for i in 0..<prediction.count where prediction[i] == tumor && organ[i] == 0 { prediction[i] = 0 }
    }
}
