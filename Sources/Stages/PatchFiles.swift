import Foundation
import Imaging
import Kernels
import Wire

/// Saves a patch's CT and label as NIfTI with the patch's own geometry: the volume's affine
/// moved to the crop corner (`patchOrigin`), so the files overlay the source scan in a viewer.
/// Used by the writer stage and `tumord tap --save`.
public struct PatchFiles {
    public let directory: String
    /// Write the CT as int16 HU (the [0,1] window mapped back to [-175, 250]) instead of float32.
    public let huInt16: Bool
    /// `.nii.gz` (true) or `.nii`.
    public let compress: Bool

    public init(directory: String, huInt16: Bool, compress: Bool = true) {
        self.directory = directory
        self.huInt16 = huInt16
        self.compress = compress
    }

    public struct WriteError: Error, CustomStringConvertible {
        public let patchID: UInt64
        public let problem: String
        public var description: String { "cannot save patch \(patchID): \(problem)" }
    }

    /// The patch's voxel → world affine.
    public static func affine(_ p: PatchMessage) -> Affine {
        guard p.affine.count == 16 else {
            return Affine.diagonal(spacing: p.spacing.count == 3 ? p.spacing : [1, 1, 1])
        }
        var m = p.affine
        if p.patchOrigin.count == 3 {
            for r in 0..<3 {
                var shift = 0.0
                for c in 0..<3 { shift += m[4 * r + c] * Double(p.patchOrigin[c]) }
                m[4 * r + 3] += shift
            }
        }
        return Affine(rowMajor: m)
    }

    public func baseName(_ p: PatchMessage) -> String {
        let id = String(p.patchID)
        return String(repeating: "0", count: max(0, 6 - id.count)) + id
    }

    /// Writes `<id>_ct.nii.gz` and, when present, `<id>_label.nii.gz` (`.nii` uncompressed);
    /// returns the file names.
    @discardableResult
    public func write(_ p: PatchMessage) throws -> [String] {
        guard let ct = p.tensor(Payload.ct), ct.rank == 3 else {
            throw WriteError(patchID: p.patchID, problem: "no float32 [X,Y,Z] '\(Payload.ct)' payload")
        }
        let affine = PatchFiles.affine(p)
        let base = (directory as NSString).appendingPathComponent(baseName(p))
        let ext = compress ? ".nii.gz" : ".nii"
        var names: [String] = []
        if huInt16 {
            var hu = ct
            let lo = Imaging.huWindow.lowerBound, width = Imaging.huWindow.upperBound - Imaging.huWindow.lowerBound
            hu.withUnsafeMutableBufferPointer { b in for i in 0..<b.count { b[i] = b[i] * width + lo } }
            try NIfTI.write(Volume(voxels: hu, affine: affine), to: base + "_ct" + ext, as: .int16)
        } else {
            try NIfTI.write(Volume(voxels: ct, affine: affine), to: base + "_ct" + ext, as: .float32)
        }
        names.append(baseName(p) + "_ct" + ext)
        if let (bytes, shape) = p.bytes(Payload.label), shape == ct.shape {
            try NIfTI.write(LabelVolume(labels: bytes, shape: shape, affine: affine), to: base + "_label" + ext)
            names.append(baseName(p) + "_label" + ext)
        }
        return names
    }
}
