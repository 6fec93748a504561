import Foundation

/// The reference's `LinearWarmupCosineAnnealingLR` in closed form (warm-up start 0, η_min 0):
/// step t < warmup: base·t/(warmup−1); after: ½·base·(1 + cos(π·(t−warmup)/(total−warmup))).
/// The reference steps it per epoch (warm-up 100 of 2000); the online trainer steps it per
/// optimizer step.
public struct LRSchedule: Codable, Equatable, Sendable {
    public var baseLR: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minLR: Double = 0
    public var warmupStartLR: Double = 0

    public init(baseLR: Double = 4e-4, warmupSteps: Int = 100, totalSteps: Int = 2000) {
        precondition(totalSteps > warmupSteps && warmupSteps >= 0, "LRSchedule: warm-up \(warmupSteps) must be below total \(totalSteps)")
        self.baseLR = baseLR; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
    }

    /// Learning rate for step `t` (0-based); past `totalSteps` it stays at η_min.
    public func lr(step t: Int) -> Double {
        if t < warmupSteps {
            return warmupStartLR + Double(t) * (baseLR - warmupStartLR) / Double(max(1, warmupSteps - 1))
        }
        let progress = min(1, Double(t - warmupSteps) / Double(totalSteps - warmupSteps))
        return minLR + 0.5 * (baseLR - minLR) * (1 + cos(Double.pi * progress))
    }
}
