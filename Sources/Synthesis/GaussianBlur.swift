import Kernels

/// `scipy.ndimage.gaussian_filter` (isotropic σ over the three axes, `mode='reflect'`,
/// `truncate=4.0`) on a `[Float]` grid: a thin adapter over the one implementation,
/// `Kernels.Tensor.gaussianFilter`. A sigma ≤ 1e-15 returns the input unchanged, like scipy.
public enum GaussianBlur {
    /// The normalised 1D kernel of scipy's `_gaussian_kernel1d` (order 0), as Float.
    public static func kernel(sigma: Double, truncate: Double = 4.0) -> [Float] {
        Tensor.gaussianKernel1d(sigma: sigma, truncate: truncate)
    }

    /// Returns the filtered grid.
    public static func filter(_ input: [Float], size: GridSize, sigma: Double, truncate: Double = 4.0) -> [Float] {
        precondition(input.count == size.count, "gaussian filter: \(input.count) values for a \(size) grid")
        guard sigma > 1e-15, size.count > 0 else { return input }
        return Tensor(shape: size.dims, data: input).gaussianFilter(sigma: [sigma, sigma, sigma], truncate: truncate).scalars
    }
}
