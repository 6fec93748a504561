import Kernels
/// The random generator of synthesis: xoshiro256** (Blackman & Vigna) seeded through SplitMix64.
///
/// Every draw of a patch (crop centre, synthesis decision, tumor type, radii, elastic
/// displacements, placement, blur sigma, texture noise) comes from one `SynthRandom` seeded with
/// the patch seed, in a fixed order, so the same seed reproduces the same bytes on any machine
/// with the same libm. The generator is a value type: copying it forks the stream.
public struct SynthRandom {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    private var spareNormal: Double?

    private var recordedSeed: UInt64
    /// The patch seed this generator belongs to (recorded with every patch).
    public var seed: UInt64 { recordedSeed }

    public init(seed: UInt64) {
        self.recordedSeed = seed
        var sm = SplitMix64(seed: seed)
        s0 = sm.next(); s1 = sm.next(); s2 = sm.next(); s3 = sm.next()
        if s0 | s1 | s2 | s3 == 0 { s0 = 0x9E37_79B9_7F4A_7C15 }  // the all-zero state is forbidden
    }

    /// A per-patch seed derived from a run seed and a patch index (SplitMix64 finaliser of both),
    /// so patch `i` of run `s` can be re-synthesized without replaying patches `0..<i`.
    public static func patchSeed(run: UInt64, index: UInt64) -> UInt64 {
        var sm = SplitMix64(seed: run ^ (index &* 0xD1B5_4A32_D192_ED03))
        _ = sm.next()
        return sm.next()
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// The next raw 64-bit output.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = SynthRandom.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = SynthRandom.rotl(s3, 45)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits (Python's `random.random()` has the same resolution).
    @inline(__always)
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [a, b), computed as `a + (b - a) * u` like Python's `random.uniform`.
    @inline(__always)
    public mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * uniform() }

    /// Uniform Float in [0, 1) with 24 random bits (texture noise).
    @inline(__always)
    public mutating func uniformFloat() -> Float { Float(next() >> 40) * 0x1.0p-24 }

    /// Uniform integer in the closed range [lo, hi] (Python's `random.randint`), unbiased
    /// (Lemire's multiply-and-reject).
    public mutating func randint(_ lo: Int, _ hi: Int) -> Int {
        precondition(lo <= hi, "randint(\(lo), \(hi)): empty range")
        let range = UInt64(hi - lo) &+ 1
        if range == 0 { return lo &+ Int(bitPattern: UInt(next())) }  // the full 64-bit range
        var m = next().multipliedFullWidth(by: range)
        if m.low < range {
            let threshold = (0 &- range) % range
            while m.low < threshold { m = next().multipliedFullWidth(by: range) }
        }
        return lo + Int(m.high)
    }

    /// Uniform index in [0, n) (numpy's `randint(0, n)`).
    public mutating func index(_ n: Int) -> Int { randint(0, n - 1) }

    /// Standard normal draw (Box–Muller; the second value of each pair is kept for the next call).
    public mutating func normal() -> Double {
        if let spare = spareNormal { spareNormal = nil; return spare }
        let u1 = 1.0 - uniform()          // (0, 1]: log stays finite
        let u2 = uniform()
        let r = (-2.0 * _log(u1)).squareRoot()
        let theta = 2.0 * Double.pi * u2
        spareNormal = r * _sin(theta)
        return r * _cos(theta)
    }

    /// True with probability `p`.
    public mutating func bernoulli(_ p: Double) -> Bool { uniform() < p }

    /// An index drawn with the given (not necessarily normalised) weights, by inverse CDF like
    /// `numpy.random.choice(p=...)`.
    public mutating func choice(weights: [Double]) -> Int {
        let total = weights.reduce(0, +)
        precondition(total > 0, "choice: weights \(weights) sum to zero")
        let u = uniform() * total
        var cumulative = 0.0
        for (i, w) in weights.enumerated() {
            cumulative += w
            if u < cumulative { return i }
        }
        return weights.lastIndex { $0 > 0 } ?? 0
    }
}


#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Glibc.sin(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Foundation.sin(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif

extension SynthRandom {
    /// Independent streams of one patch seed, so each pipeline stage can redraw its part alone:
    /// the cropper (crop, decision, tumor mask) and the engine (texture or blend sigma).
    public enum Stream: UInt64, Sendable {
        case cropper = 0
        case engine = 1
    }

    public init(seed: UInt64, stream: Stream) {
        self.init(seed: stream == .cropper ? seed : SynthRandom.patchSeed(run: seed, index: 0x5EED_0000 + stream.rawValue))
        self.recordedSeed = seed   // the patch seed, not the derived one
    }
}
