import Kernels
import Imaging

/// The DiffTumor blender (difftumor.md §4 "Blending", "Label update"):
/// - liver and kidney: m̃ = gaussian_filter(mask, σ), σ ~ U(0,4);
///   out = clamp((1 − m̃)·clamp(ct) + m̃·clamp((sample + 1)/2), 0, 1);
/// - pancreas: the whole patch becomes (sample + 1)/2, no blend, no clamp;
/// - label: organ → 1, tumor → 2.
/// Volumes are in the pipeline's (X, Y, Z) layout; `sample` is the decoded texture in [-1, 1]
/// (use `fromNetworkLayout` on a decoder output in the network's (Z, X, Y) layout first).
public enum Blender {
    /// Draws the blur sigma U(0, 4).
    public static func drawSigma(_ rng: inout SynthRandom) -> Double { rng.uniform(0, 4) }

    /// The reference's `permute(0,1,-2,-1,-3)`: a (Z, X, Y) volume (batch and channel dropped)
    /// back to (X, Y, Z): out[x, y, z] = t[z, x, y].
    public static func fromNetworkLayout(_ t: Tensor) -> Tensor {
        let dims = Array(t.shape.suffix(3))
        precondition(dims.count == 3 && Tensor.elementCount(dims) == t.count,
                     "fromNetworkLayout expects (…, Z, X, Y) with one volume, got \(t.shape)")
        let volume = DiffTumorLayout.toPipeline(t.reshaped([1, 1] + dims))
        return volume.reshaped(Array(volume.shape.suffix(3)))
    }

    /// The reference's `permute(0,1,-1,-3,-2)`: (X, Y, Z) → (Z, X, Y).
    public static func toNetworkLayout(_ t: Tensor) -> Tensor {
        precondition(t.rank == 3, "toNetworkLayout expects (X, Y, Z), got \(t.shape)")
        let network = DiffTumorLayout.toNetwork(t.reshaped([1, 1] + t.shape))
        return network.reshaped(Array(network.shape.suffix(3)))
    }

    /// gaussian_filter of a binary mask (as Float), computed only over the mask's bounding box
    /// grown by the kernel radius (elsewhere the result is exactly 0; the reflect boundary is
    /// kept where the box meets the grid edge).
    public static func blurMask(_ mask: MaskGrid, sigma: Double) -> [Float] {
        let size = mask.size
        var out = [Float](repeating: 0, count: size.count)
        guard let bbox = mask.boundingBox else { return out }
        guard sigma > 1e-15 else { return mask.voxels.map { Float($0 != 0 ? 1 : 0) } }
        let r = Int(4.0 * sigma + 0.5) + 1
        let lo = (0..<3).map { max(0, bbox.min[$0] - r) }
        let hi = (0..<3).map { min(size[$0], bbox.max[$0] + r + 1) }
        let sub = GridSize(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])
        var region = [Float](repeating: 0, count: sub.count)
        for x in 0..<sub.x { for y in 0..<sub.y {
            let s = size.index(lo[0] + x, lo[1] + y, lo[2]), d = sub.index(x, y, 0)
            for z in 0..<sub.z { region[d + z] = mask.voxels[s + z] != 0 ? 1 : 0 }
        } }
        let blurred = GaussianBlur.filter(region, size: sub, sigma: sigma)
        for x in 0..<sub.x { for y in 0..<sub.y {
            let s = sub.index(x, y, 0), d = size.index(lo[0] + x, lo[1] + y, lo[2])
            for z in 0..<sub.z { out[d + z] = blurred[s + z] }
        } }
        return out
    }

    /// Liver/kidney alpha blend with an already blurred mask m̃ (all (X, Y, Z)).
    public static func alphaBlend(ct: Tensor, sample: Tensor, blurredMask: [Float]) -> Tensor {
        precondition(ct.shape == sample.shape && ct.count == blurredMask.count,
                     "alphaBlend: ct \(ct.shape), sample \(sample.shape), mask \(blurredMask.count) values")
        var out = Tensor(uninitialized: ct.shape)
        ct.withUnsafeBufferPointer { v in
            sample.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    for i in 0..<v.count {
                        let m = blurredMask[i]
                        let vol = min(max(v[i], 0), 1)
                        let smp = min(max((s[i] + 1) / 2, 0), 1)
                        o[i] = min(max((1 - m) * vol + m * smp, 0), 1)
                    }
                }
            }
        }
        return out
    }

    /// Pancreas: the whole patch is the decoded sample, (sample + 1)/2, unclamped.
    public static func replace(sample: Tensor) -> Tensor {
        var out = Tensor(uninitialized: sample.shape)
        sample.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<s.count { o[i] = (s[i] + 1) / 2 }
            }
        }
        return out
    }

    /// Label update: 0 background, 1 organ, 2 tumor (tumor wins, also outside the organ).
    public static func updateLabel(organ: MaskGrid, tumor: MaskGrid) -> MaskGrid {
        precondition(organ.size == tumor.size, "updateLabel: organ \(organ.size) and tumor \(tumor.size) differ")
        var out = MaskGrid(zeros: organ.size)
        for i in 0..<out.voxels.count {
            out.voxels[i] = tumor.voxels[i] != 0 ? 2 : (organ.voxels[i] != 0 ? 1 : 0)
        }
        return out
    }

    /// The whole blending step for a decoded sample: blend (or replace), then update the label.
    /// `sigma` is drawn with `drawSigma` by the caller for liver/kidney (ignored for pancreas).
    public static func blend(ct: Tensor, organ: MaskGrid, tumor: MaskGrid, sample: Tensor,
                             organType: Organ, sigma: Double) -> (ct: Tensor, label: MaskGrid) {
        let out: Tensor
        if organType == .pancreas {
            out = replace(sample: sample)
        } else {   // liver, kidney (and any other organ)
            out = alphaBlend(ct: ct, sample: sample, blurredMask: blurMask(tumor, sigma: sigma))
        }
        return (out, updateLabel(organ: organ, tumor: tumor))
    }
}
