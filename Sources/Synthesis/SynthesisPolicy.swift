/// The decision to synthesize and the tumor type (STEP3 `train_epoch`, difftumor.md §4):
/// only healthy scans, with probability 0.5; type early 0.8 / medium 0.1 / large 0.1, and an
/// early tumor is tiny or small 50/50. All probabilities are configurable.
public struct SynthesisPolicy: Equatable, Sendable {
    public var synthesisProbability: Double
    public var earlyProbability: Double
    public var mediumProbability: Double
    public var largeProbability: Double
    /// Share of tiny among early tumors (the rest are small).
    public var tinyShare: Double

    public init(synthesisProbability: Double = 0.5, earlyProbability: Double = 0.8,
                mediumProbability: Double = 0.1, largeProbability: Double = 0.1, tinyShare: Double = 0.5) {
        self.synthesisProbability = synthesisProbability
        self.earlyProbability = earlyProbability
        self.mediumProbability = mediumProbability
        self.largeProbability = largeProbability
        self.tinyShare = tinyShare
    }

    public static let reference = SynthesisPolicy()

    /// Draw order: the synthesis coin (only for healthy scans), then the type, then for early
    /// the tiny/small coin. Returns nil when the patch stays as it is.
    public func decide(healthy: Bool, rng: inout SynthRandom) -> TumorSizeClass? {
        guard healthy, rng.uniform() < synthesisProbability else { return nil }
        return drawSizeClass(rng: &rng)
    }

    /// The type draw alone (for callers that already decided to synthesize).
    public func drawSizeClass(rng: inout SynthRandom) -> TumorSizeClass {
        switch rng.choice(weights: [earlyProbability, mediumProbability, largeProbability]) {
        case 0: return rng.uniform() < tinyShare ? .tiny : .small
        case 1: return .medium
        default: return .large
        }
    }

    /// Draws a size class for a requested tumor type (early: tiny/small coin).
    public func drawSizeClass(for type: TumorType, rng: inout SynthRandom) -> TumorSizeClass {
        switch type {
        case .early: return rng.uniform() < tinyShare ? .tiny : .small
        case .medium: return .medium
        case .large: return .large
        }
    }
}
