import Kernels

extension Volume {
    /// HU window: clip to `window` and scale linearly to [0, 1] (MONAI
    /// `ScaleIntensityRanged(a_min=-175, a_max=250, b_min=0, b_max=1, clip=True)`).
    public func windowed(_ window: ClosedRange<Float> = Imaging.huWindow) -> Volume {
        var out = Tensor(uninitialized: shape)
        let lo = window.lowerBound, scale = 1 / (window.upperBound - window.lowerBound)
        voxels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<src.count {
                    dst[i] = min(max((src[i] - lo) * scale, 0), 1)
                }
            }
        }
        return Volume(voxels: out, affine: affine)
    }
}
