import Kernels
import Imaging

/// What the procedural engine drew for one patch.
public struct ProceduralRecord: Equatable, Sendable {
    public var blurSigma: Double
    public var differenceHU: Double
    public var sigmaA: Double
    public var sigmaB: Double
}

/// The weight-free tumor texture of SyntheticTumors (peers.md §1a step 5), painting into a tumor
/// mask of `TumorGeometry`: geo_blur = gaussian_filter(mask, σ ~ U(1,2)), difference ~ U(65,145)
/// HU, and inside the organ (and the tumor, where it leaves the organ) ct' = ct − texture ·
/// geo_blur · difference. The CT here is already windowed to [0,1] over [-175, 250] HU, so the
/// difference is divided by 425 and the result clamped to [0, 1] (the window's clip).
/// The texture is drawn only over the tumor's bounding box plus the blur radius.
public enum ProceduralEngine {
    public static let huWindowWidth: Double = 425

    /// Draw order: blur σ, difference, texture parameters, texture noise.
    public static func paint(ct: Tensor, organ: MaskGrid, tumor: MaskGrid,
                             rng: inout SynthRandom) -> (ct: Tensor, record: ProceduralRecord) {
        precondition(ct.shape == organ.size.dims && organ.size == tumor.size,
                     "procedural engine: ct \(ct.shape), organ \(organ.size), tumor \(tumor.size) differ")
        let sigma = rng.uniform(1, 2)
        let difference = rng.uniform(65, 145)
        let texture = ProceduralTexture(rng: &rng)
        let record = ProceduralRecord(blurSigma: sigma, differenceHU: difference,
                                      sigmaA: texture.sigmaA, sigmaB: texture.sigmaB)
        guard let bbox = tumor.boundingBox else { return (ct, record) }
        let size = tumor.size
        let geoBlur = Blender.blurMask(tumor, sigma: sigma)
        let r = Int(4.0 * sigma + 0.5) + 1
        let lo = (0..<3).map { max(0, bbox.min[$0] - r) }
        let hi = (0..<3).map { min(size[$0], bbox.max[$0] + r + 1) }
        let sub = GridSize(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])
        let tex = texture.render(size: sub, rng: &rng)
        let scale = Float(difference / huWindowWidth)
        var out = ct
        out.withUnsafeMutableBufferPointer { o in
            for x in 0..<sub.x { for y in 0..<sub.y {
                let d = size.index(lo[0] + x, lo[1] + y, lo[2]), s = sub.index(x, y, 0)
                for z in 0..<sub.z {
                    let i = d + z
                    guard organ.voxels[i] != 0 || tumor.voxels[i] != 0 else { continue }
                    o[i] = min(max(o[i] - tex[s + z] * geoBlur[i] * scale, 0), 1)
                }
            }
            }
        }
        return (out, record)
    }
}
