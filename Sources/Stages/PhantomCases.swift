import Imaging
import Kernels

/// The built-in phantom as the loader's data (Imaging.Phantom): `cases` deterministic abdomens,
/// case `i` from seed `seed + i`, already RAS at 1 mm; HU-windowed to [0,1] and the label reduced
/// to 0 / 1 (the configured organ). Phantoms are healthy: every crop is eligible for synthesis.
public final class PhantomCases: CaseProvider {
    public let caseCount: Int
    let seed: UInt64
    let organIDs: Set<UInt8>
    let shape: [Int]

    public init(cases: Int, seed: UInt64, organ: String, shape: [Int]? = nil) throws {
        guard let o = Organ(rawValue: organ) else { throw ConfigError(keyPath: "data.organ", "unknown organ '\(organ)'") }
        caseCount = cases
        self.seed = seed
        self.shape = shape ?? Phantom.defaultShape
        organIDs = Set(Phantom.organs.allIDs(of: o))
    }

    public func load(_ index: Int) throws -> LoadedCase {
        let (ct, labels) = Phantom.generate(seed: seed &+ UInt64(index), shape: shape)
        let v = ct.windowed()
        return LoadedCase(name: "phantom-\(seed &+ UInt64(index))", ct: v.voxels, labels: labels.mask(of: organIDs).labels,
                          affine: v.affine.m, spacing: v.spacing, healthy: true)
    }

    /// Bytes of one loader → cropper message (CT float32 + label uint8).
    public static func messageBytes(shape: [Int]?) -> Int { (shape ?? Phantom.defaultShape).reduce(1, *) * 5 }
}
