import Kernels

/// Mean DSC/NSD of organ (1) and tumor (2) over validation cases; NaN cases (class absent from
/// both prediction and label) are left out of the means.
public struct ValidationResult: CustomStringConvertible {
    public var perCase: [[ClassMetrics]]
    public var organDSC: Double, organNSD: Double, tumorDSC: Double, tumorNSD: Double

    public init(perCase: [[ClassMetrics]]) {
        self.perCase = perCase
        func mean(_ c: Int, _ f: (ClassMetrics) -> Double) -> Double {
            let v = perCase.map { f($0[c]) }.filter { !$0.isNaN }
            return v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
        }
        organDSC = mean(0, \.dsc); organNSD = mean(0, \.nsd); tumorDSC = mean(1, \.dsc); tumorNSD = mean(1, \.nsd)
    }

    public var description: String {
        "organ DSC \(organDSC) NSD \(organNSD), tumor DSC \(tumorDSC) NSD \(tumorNSD) over \(perCase.count) cases"
    }
}

extension SegmentationTrainer {
    /// Validation as the reference's `val_epoch` does it: sliding window (96³, overlap 0.5,
    /// Gaussian), argmax, DSC and NSD at `toleranceMM` for organ and tumor.
    /// `cases` are preprocessed volumes (RAS, 1 mm, CT windowed to [0, 1], as the loader
    /// stage emits them) with labels 0/1/2 on the same grid.
    /// `organMasks` (one per case, nonzero = organ) applies the reference's organ pseudo-label
    /// masking: a predicted tumor voxel counts only where the pseudo-label is organ, others
    /// become background (`tumor = prediction_tumor ∧ organ_pseudo`); organ metrics are unchanged.
    public func validate(cases: [(ct: Volume, label: LabelVolume)], window: SlidingWindow = SlidingWindow(),
                         toleranceMM: Double = SegmentationMetrics.defaultToleranceMM,
                         organMasks: [[UInt8]]? = nil) -> ValidationResult {
        precondition(organMasks == nil || organMasks!.count == cases.count,
                     "validate: \(organMasks!.count) organ masks for \(cases.count) cases")
        return ValidationResult(perCase: cases.enumerated().map { i, c in
            precondition(c.ct.shape == c.label.shape, "validate: CT \(c.ct.shape) and label \(c.label.shape) differ")
            var pred = SlidingWindow.argmax(predictLogits(volume: c.ct.voxels, window: window))
            if let organMasks { SegmentationMetrics.maskTumor(&pred, organ: organMasks[i]) }
            return SegmentationMetrics.evaluate(label: c.label.labels, prediction: pred, dims: c.label.shape,
                                                spacingMM: c.label.spacing, classes: [1, 2], toleranceMM: toleranceMM)
        })
    }
}
