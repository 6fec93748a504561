/// The SyntheticTumors texture (peers.md §1a; `get_predefined_texture`), drawn per crop over a
/// region instead of pre-built on ten 420×300×320 grids:
/// 1. a = U(0,1) noise blurred with σa ∈ {3, 6, 9, 12, 15}, rescaled to [base, base + scale]
///    (scale ~ U(0.19, 0.21), base ~ U(0.04, 0.06));
/// 2. b = 1[a > U(0,1)] blurred with σb ∈ {4, 7};
/// 3. texture = clip(β·b, 0, 1) with β = u0 / mean(b[b > 0.12]), u0 ~ U(0.5, 0.55).
/// The pair (σa, σb) is drawn uniformly, like the reference's random choice among its ten
/// textures. Two departures, both for speed and memory:
/// - the field a is smooth (σa ≥ 3), so it is computed on a grid 3× coarser (noise blurred with
///   σa/3) and interpolated trilinearly;
/// - the reference's min–max rescaling runs over its whole 420×300×320 texture; here the field is
///   standardised with its theoretical standard deviation and rescaled with the extremes the
///   reference grid has (z-scores measured by scripts/synthesis_texture_calibration.py), so a has
///   the reference's distribution instead of being stretched to the small region.
public struct ProceduralTexture {
    public static let sigmaAChoices: [Double] = [3, 6, 9, 12, 15]
    public static let sigmaBChoices: [Double] = [4, 7]
    /// (zmin, zmax) of a2 over 420×300×320, in standard deviations, per σa (numpy seed 0).
    static let referenceExtremes: [Double: (Double, Double)] = [
        3: (-7.061, 6.953), 6: (-5.537, 6.822), 9: (-4.951, 5.689), 12: (-5.383, 5.902), 15: (-6.475, 4.764),
    ]
    static let coarseFactor = 3

    public var sigmaA: Double
    public var sigmaB: Double
    public var scale: Double
    public var base: Double
    public var u0: Double

    /// Draw order: σa index, σb index, scale, base, u0 (the noise follows in `render`).
    public init(rng: inout SynthRandom) {
        sigmaA = ProceduralTexture.sigmaAChoices[rng.index(ProceduralTexture.sigmaAChoices.count)]
        sigmaB = ProceduralTexture.sigmaBChoices[rng.index(ProceduralTexture.sigmaBChoices.count)]
        scale = rng.uniform(0.19, 0.21)
        base = rng.uniform(0.04, 0.06)
        u0 = rng.uniform(0.5, 0.55)
    }

    /// Renders the texture over a region of `size` voxels (values in [0, 1]).
    public func render(size: GridSize, rng: inout SynthRandom) -> [Float] {
        let a = probabilityField(size: size, rng: &rng)
        var b = [Float](repeating: 0, count: size.count)
        for i in 0..<size.count { b[i] = a[i] > rng.uniformFloat() ? 1 : 0 }
        let b2 = GaussianBlur.filter(b, size: size, sigma: sigmaB)
        var sum = 0.0, n = 0
        for v in b2 where v > 0.12 { sum += Double(v); n += 1 }
        let beta = n > 0 ? u0 / (sum / Double(n)) : u0 / 0.12
        let fb = Float(beta)
        return b2.map { min(max(fb * $0, 0), 1) }
    }

    /// The field a in [base, base + scale] over `size`.
    func probabilityField(size: GridSize, rng: inout SynthRandom) -> [Float] {
        let f = ProceduralTexture.coarseFactor
        let coarse = GridSize(size.x / f + 2, size.y / f + 2, size.z / f + 2)
        var noise = [Float](repeating: 0, count: coarse.count)
        for i in noise.indices { noise[i] = rng.uniformFloat() }
        let sigmaC = sigmaA / Double(f)
        let blurred = GaussianBlur.filter(noise, size: coarse, sigma: sigmaC)
        // Theoretical std of blurred U(0,1) noise: sqrt(1/12 · (Σ w²)³).
        let w = GaussianBlur.kernel(sigma: sigmaC).map(Double.init)
        let s2 = w.reduce(0) { $0 + $1 * $1 }
        let std = (s2 * s2 * s2 / 12).squareRoot()
        let (zmin, zmax) = ProceduralTexture.referenceExtremes[sigmaA] ?? (-6, 6)
        let k = scale / ((zmax - zmin) * std)
        let c0 = base - k * (0.5 + zmin * std)   // a = k·a2 + c0 = scale·(z − zmin)/(zmax − zmin) + base
        let lo = Float(base), hi = Float(base + scale)
        var coarseA = blurred.map { min(max(Float(k) * $0 + Float(c0), lo), hi) }
        // Trilinear upsampling: voxel i sits at coarse coordinate i / f.
        var out = [Float](repeating: 0, count: size.count)
        let inv = 1 / Float(f)
        coarseA.withUnsafeMutableBufferPointer { c in
            for x in 0..<size.x {
                let fx = Float(x) * inv, x0 = Int(fx), tx = fx - Float(x0)
                for y in 0..<size.y {
                    let fy = Float(y) * inv, y0 = Int(fy), ty = fy - Float(y0)
                    for z in 0..<size.z {
                        let fz = Float(z) * inv, z0 = Int(fz), tz = fz - Float(z0)
                        func v(_ i: Int, _ j: Int, _ l: Int) -> Float { c[coarse.index(x0 + i, y0 + j, z0 + l)] }
                        let c00 = v(0, 0, 0) * (1 - tz) + v(0, 0, 1) * tz
                        let c01 = v(0, 1, 0) * (1 - tz) + v(0, 1, 1) * tz
                        let c10 = v(1, 0, 0) * (1 - tz) + v(1, 0, 1) * tz
                        let c11 = v(1, 1, 0) * (1 - tz) + v(1, 1, 1) * tz
                        let c0v = c00 * (1 - ty) + c01 * ty, c1v = c10 * (1 - ty) + c11 * ty
                        out[size.index(x, y, z)] = c0v * (1 - tx) + c1v * tx
                    }
                }
            }
        }
        return out
    }
}
