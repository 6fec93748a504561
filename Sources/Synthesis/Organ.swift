import Imaging

/// STEP3 settings of the organs the reference synthesizes into (difftumor.md §1, §4).
/// `Organ` is Imaging's enum; spleen has no reference setting.
extension Organ {
    /// Radius (voxels) of the sphere whose volume a healthy crop's foreground must exceed
    /// (`fg_thresh` of STEP3 main.py: liver 30, pancreas 15, kidney 25); nil for other organs.
    public var foregroundRadius: Int? {
        switch self {
        case .liver: 30
        case .pancreas: 15
        case .kidney: 25
        default: nil
        }
    }

    /// Whether the placement slice is eroded with a 5×5 kernel (liver only).
    public var erodesPlacementSlice: Bool { self == .liver }
}

/// The tumor type drawn per synthesized patch (STEP3 `monai_trainer.train_epoch`).
public enum TumorType: String, CaseIterable, Sendable, CustomStringConvertible {
    case early, medium, large
    public var description: String { rawValue }
}

/// The geometric size class of `get_fixed_geo`: early tumors are tiny or small (50/50).
public enum TumorSizeClass: String, CaseIterable, Sendable, CustomStringConvertible {
    case tiny, small, medium, large

    public var tumorType: TumorType {
        switch self {
        case .tiny, .small: .early
        case .medium: .medium
        case .large: .large
        }
    }

    /// Number of ellipsoids (inclusive range): tiny/small randint(1,3), medium and large 1.
    public var countRange: ClosedRange<Int> {
        switch self {
        case .tiny, .small: 1...3
        case .medium, .large: 1...1
        }
    }

    /// Semi-axis range in voxels (= mm), each axis drawn independently with randint:
    /// base radius 4/8/16/32, range int(0.75 r)...int(1.25 r), large int(0.75 r)...int(2 r).
    public var radiusRange: ClosedRange<Int> {
        switch self {
        case .tiny: 3...5
        case .small: 6...10
        case .medium: 12...20
        case .large: 24...64
        }
    }

    /// Draws the elastic-deformation sigma: tiny U(0.5,1), small randint(1,2),
    /// medium randint(3,6), large randint(5,10).
    public func drawSigma(_ rng: inout SynthRandom) -> Double {
        switch self {
        case .tiny: rng.uniform(0.5, 1)
        case .small: Double(rng.randint(1, 2))
        case .medium: Double(rng.randint(3, 6))
        case .large: Double(rng.randint(5, 10))
        }
    }

    /// Half-width of the canvas padding around the patch (80, or 140 for large).
    public var canvasMargin: Int { self == .large ? 140 : 80 }

    public var description: String { rawValue }
}
