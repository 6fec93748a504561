/// Imaging: NIfTI I/O through libnifti, canonical orientation, resampling, HU windowing and
/// the built-in phantom. Everything here works on `Kernels.Tensor` voxel buffers.
public enum Imaging {
    /// The HU window of the reference (difftumor.md §1): [-175, 250] scaled to [0, 1].
    public static let huWindow: ClosedRange<Float> = -175...250
}
