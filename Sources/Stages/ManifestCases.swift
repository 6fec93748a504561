import Foundation
import Imaging
import Kernels

/// Cases from a dataset manifest (Imaging.DatasetManifest): each is read with libnifti,
/// reoriented to RAS, resampled to 1 mm (trilinear CT, nearest labels), HU-windowed to [0,1],
/// and its label reduced to 0 background / 1 the configured organ.
public final class ManifestCases: CaseProvider {
    public let manifest: DatasetManifest
    let organ: Organ

    public init(path: String, organ: String) throws {
        guard let o = Organ(rawValue: organ) else { throw ConfigError(keyPath: "data.organ", "unknown organ '\(organ)'") }
        self.organ = o
        do {
            manifest = try DatasetManifest.read(path)
        } catch {
            throw ConfigError(keyPath: "data.manifest", "\(error)")
        }
        guard !manifest.cases.isEmpty else { throw ConfigError(keyPath: "data.manifest", "'\(path)' lists no cases") }
    }

    public var caseCount: Int { manifest.cases.count }

    public func load(_ index: Int) throws -> LoadedCase {
        let c = manifest.cases[index]
        let (ct, labels) = try c.load()
        return try ManifestCases.preprocess(name: c.name, ct: ct, labels: labels, organIDs: Set(OrganMap.totalSegmentator.allIDs(of: organ)),
                                        healthy: c.healthy)
    }

    /// The reference's MONAI chain: Orientation RAS, Spacing 1 mm, ScaleIntensityRange.
    static func preprocess(name: String, ct: Volume, labels: LabelVolume, organIDs: Set<UInt8>, healthy: Bool) throws -> LoadedCase {
        let v = ct.reoriented(to: "RAS").resampled(spacing: [1, 1, 1]).windowed()
        let l = labels.reoriented(to: "RAS").resampled(spacing: [1, 1, 1]).mask(of: organIDs)
        guard v.shape == l.shape else {
            throw StageRejection("grid-mismatch", "case \(name): CT \(v.shape) and label \(l.shape) differ after resampling")
        }
        return LoadedCase(name: name, ct: v.voxels, labels: l.labels, affine: v.affine.m, spacing: v.spacing, healthy: healthy)
    }
}
