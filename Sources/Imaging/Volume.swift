import Kernels

/// A scalar 3D image (CT in HU, or after windowing in [0, 1]) on a voxel grid in world space.
///
/// Layout contract (shared by every module): `voxels` has shape [X, Y, Z] in C order (z varies
/// fastest), and element (i, j, k) is NIfTI voxel (i, j, k), the same as nibabel's
/// `get_fdata()[i, j, k]`. Flat index = (i * Y + j) * Z + k.
/// `affine` maps (i, j, k, 1) to RAS+ world millimetres.
public struct Volume {
    public var voxels: Tensor
    public var affine: Affine

    public init(voxels: Tensor, affine: Affine) {
        precondition(voxels.rank == 3, "a Volume is [X, Y, Z], got \(voxels.shape)")
        self.voxels = voxels
        self.affine = affine
    }

    /// [X, Y, Z].
    public var shape: [Int] { voxels.shape }
    /// Voxel size in mm along each voxel axis (column norms of the affine).
    public var spacing: [Double] { affine.spacing }
    /// Orientation code such as "RAS".
    public var orientation: String { affine.orientationCode }
    public var voxelCount: Int { voxels.count }

    @inlinable public static func flatIndex(_ i: Int, _ j: Int, _ k: Int, shape: [Int]) -> Int {
        (i * shape[1] + j) * shape[2] + k
    }

    public subscript(i: Int, j: Int, k: Int) -> Float {
        get { voxels[flat: (i * shape[1] + j) * shape[2] + k] }
        set { voxels[flat: (i * shape[1] + j) * shape[2] + k] = newValue }
    }

    /// Whether another grid has the same shape and (within `tolerance`) the same affine.
    public func sameGrid(shape other: [Int], affine otherAffine: Affine, tolerance: Double = 1e-3) -> Bool {
        shape == other && affine.isClose(to: otherAffine, tolerance: tolerance)
    }
}

/// An integer label map (organ ids, tumor = 2 after synthesis, ...) on a voxel grid.
/// Same layout contract as `Volume`: `labels` is [X, Y, Z] in C order, z fastest.
public struct LabelVolume {
    public var labels: [UInt8]
    public private(set) var shape: [Int]
    public var affine: Affine

    public init(labels: [UInt8], shape: [Int], affine: Affine) {
        precondition(shape.count == 3 && labels.count == shape.reduce(1, *),
                     "label buffer of \(labels.count) does not match shape \(shape)")
        self.labels = labels
        self.shape = shape
        self.affine = affine
    }

    public init(zerosLike volume: Volume) {
        self.init(labels: [UInt8](repeating: 0, count: volume.voxelCount), shape: volume.shape, affine: volume.affine)
    }

    public var spacing: [Double] { affine.spacing }
    public var orientation: String { affine.orientationCode }
    public var voxelCount: Int { labels.count }

    public subscript(i: Int, j: Int, k: Int) -> UInt8 {
        get { labels[(i * shape[1] + j) * shape[2] + k] }
        set { labels[(i * shape[1] + j) * shape[2] + k] = newValue }
    }

    /// A binary mask (1 where the label is in `ids`).
    public func mask(of ids: Set<UInt8>) -> LabelVolume {
        var table = [UInt8](repeating: 0, count: 256)
        for id in ids { table[Int(id)] = 1 }
        return LabelVolume(labels: labels.map { table[Int($0)] }, shape: shape, affine: affine)
    }
}

extension Volume {
    /// Throws `gridMismatch` unless `label` has this volume's shape and affine.
    public func checkSameGrid(as label: LabelVolume, ctPath: String = "CT", labelPath: String = "label") throws {
        guard label.shape == shape else {
            throw ImagingError(.gridMismatch, path: labelPath,
                               "label shape \(label.shape) differs from CT shape \(shape) (\(ctPath))")
        }
        guard affine.isClose(to: label.affine, tolerance: 1e-3) else {
            throw ImagingError(.gridMismatch, path: labelPath,
                               "label affine differs from the CT affine (\(ctPath)):\nlabel\n\(label.affine)\nCT\n\(affine)")
        }
    }
}
