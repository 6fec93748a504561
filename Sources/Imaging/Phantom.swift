import Dispatch
import Kernels

/// The built-in data: a deterministic procedural abdominal CT at 1 mm with a matching label map.
///
/// Body outline with subcutaneous fat and a muscle wall, spine (vertebral body, canal, posterior
/// elements), paraspinal muscles, ribs, aorta, liver, pancreas, both kidneys, spleen and bowel
/// with gas pockets; HU means of non-contrast CT plus texture noise (smooth and per-voxel).
/// Labels use the TotalSegmentator ids: spleen 1, kidney right 2, kidney left 3, liver 5,
/// pancreas 7. Orientation RAS (+x points toward the patient's right), so the liver sits at +x
/// and the spleen at −x; +y is anterior, +z superior.
///
/// Same seed and shape, same voxels (bit for bit): every random value comes from a hash of
/// (seed, position), so the result does not depend on thread count or scheduling.
public enum Phantom {
    /// The default grid: 200 (R-L) × 160 (A-P) × 160 (S-I) voxels of 1 mm.
    public static let defaultShape = [200, 160, 160]

    public enum HU {
        public static let air: Float = -1000, fat: Float = -100, muscle: Float = 50, bowel: Float = 25
        public static let gas: Float = -900, cancellousBone: Float = 230, corticalBone: Float = 700
        public static let csf: Float = 10, blood: Float = 42
        public static let liver: Float = 58, spleen: Float = 46, kidney: Float = 32, pancreas: Float = 38
    }

    /// The label id map the phantom writes (TotalSegmentator's, with spleen 1).
    public static let organs = OrganMap.totalSegmentator

    /// Generates the phantom. `shape` scales the anatomy (1 mm voxels whatever the shape).
    public static func generate(seed: UInt64, shape: [Int] = defaultShape) -> (ct: Volume, labels: LabelVolume) {
        precondition(shape.count == 3 && shape.allSatisfy { $0 >= 16 }, "phantom shape must be 3 sizes ≥ 16, got \(shape)")
        let anatomy = Anatomy(seed: seed, shape: shape)
        let (nx, ny, nz) = (shape[0], shape[1], shape[2])
        var ct = Tensor(uninitialized: shape)
        var labels = [UInt8](repeating: 0, count: nx * ny * nz)
        ct.withUnsafeMutableBufferPointer { hu in
            labels.withUnsafeMutableBufferPointer { lab in
                let h = hu.baseAddress!, l = lab.baseAddress!
                parallelFor(nx) { xs in
                    for i in xs {
                        for j in 0..<ny {
                            for k in 0..<nz {
                                let o = (i * ny + j) * nz + k
                                let (v, id) = anatomy.voxel(i, j, k)
                                h[o] = v
                                l[o] = id
                            }
                        }
                    }
                }
            }
        }
        // RAS, 1 mm, centred on the world origin.
        let origin = shape.map { -Double($0 - 1) / 2 }
        let affine = Affine.diagonal(spacing: [1, 1, 1], origin: origin)
        return (Volume(voxels: ct, affine: affine), LabelVolume(labels: labels, shape: shape, affine: affine))
    }
}

/// Seeded geometry of one phantom; `voxel(i, j, k)` is a pure function of position.
struct Anatomy {
    typealias HU = Phantom.HU
    let seed: UInt64
    let shape: [Int]
    /// Half extents of the grid in mm (the body fills most of x and y, all of z).
    let hx: Double, hy: Double, hz: Double
    // Body ellipse semi-axes (mm) and wall thicknesses.
    let bodyA: Double, bodyB: Double, fatThickness: Double, muscleThickness: Double
    let liver: Ellipsoid, spleen: Ellipsoid, kidneyR: Ellipsoid, kidneyL: Ellipsoid
    let pancreas: Capsule
    let vertebra: (x: Double, y: Double, r: Double)
    let canal: (x: Double, y: Double, r: Double)
    let aorta: (x: Double, y: Double, r: Double)
    let gasPockets: [(x: Double, y: Double, z: Double, r: Double)]
    let ribSpacing: Double, ribPhase: Double

    struct Ellipsoid {
        var c: (Double, Double, Double), a: (Double, Double, Double)
        /// Normalised squared distance: < 1 inside.
        @inline(__always) func q(_ x: Double, _ y: Double, _ z: Double) -> Double {
            let dx = (x - c.0) / a.0, dy = (y - c.1) / a.1, dz = (z - c.2) / a.2
            return dx * dx + dy * dy + dz * dz
        }
    }

    struct Capsule {
        var p0: (Double, Double, Double), p1: (Double, Double, Double), r0: Double, r1: Double
        /// Distance to the axis segment divided by the local radius: < 1 inside.
        @inline(__always) func q(_ x: Double, _ y: Double, _ z: Double) -> Double {
            let d = (p1.0 - p0.0, p1.1 - p0.1, p1.2 - p0.2)
            let len2 = d.0 * d.0 + d.1 * d.1 + d.2 * d.2
            var t = ((x - p0.0) * d.0 + (y - p0.1) * d.1 + (z - p0.2) * d.2) / len2
            t = min(max(t, 0), 1)
            let e = (x - p0.0 - t * d.0, y - p0.1 - t * d.1, z - p0.2 - t * d.2)
            let r = r0 + (r1 - r0) * t
            return (e.0 * e.0 + e.1 * e.1 + e.2 * e.2).squareRoot() / r
        }
    }

    init(seed: UInt64, shape: [Int]) {
        self.seed = seed
        self.shape = shape
        hx = Double(shape[0]) / 2; hy = Double(shape[1]) / 2; hz = Double(shape[2]) / 2
        var rng = SplitMix64(seed: seed)
        func jitter(_ v: Double, _ frac: Double) -> Double { v * (1 + frac * (2 * rng.nextUnit() - 1)) }
        // Everything below is in mm relative to the grid centre, scaled by the half extents
        // (the default 200×160×160 grid gives hx=100, hy=80, hz=80).
        let sx = hx / 100, sy = hy / 80, sz = hz / 80
        bodyA = jitter(92 * sx, 0.03); bodyB = jitter(70 * sy, 0.03)
        fatThickness = jitter(11 * min(sx, sy), 0.2); muscleThickness = jitter(7 * min(sx, sy), 0.15)
        liver = Ellipsoid(c: (jitter(42 * sx, 0.06), jitter(8 * sy, 0.3), jitter(32 * sz, 0.06)),
                          a: (jitter(52 * sx, 0.06), jitter(52 * sy, 0.06), jitter(50 * sz, 0.06)))
        spleen = Ellipsoid(c: (jitter(-56 * sx, 0.05), jitter(-22 * sy, 0.1), jitter(34 * sz, 0.08)),
                           a: (jitter(20 * sx, 0.08), jitter(32 * sy, 0.08), jitter(36 * sz, 0.08)))
        kidneyR = Ellipsoid(c: (jitter(38 * sx, 0.05), jitter(-34 * sy, 0.05), jitter(-14 * sz, 0.2)),
                            a: (jitter(19 * sx, 0.08), jitter(15 * sy, 0.08), jitter(36 * sz, 0.08)))
        kidneyL = Ellipsoid(c: (jitter(-38 * sx, 0.05), jitter(-34 * sy, 0.05), jitter(-4 * sz, 0.3)),
                            a: (jitter(19 * sx, 0.08), jitter(15 * sy, 0.08), jitter(36 * sz, 0.08)))
        pancreas = Capsule(p0: (jitter(14 * sx, 0.2), jitter(12 * sy, 0.3), jitter(4 * sz, 0.5)),
                           p1: (jitter(-44 * sx, 0.08), jitter(-8 * sy, 0.3), jitter(14 * sz, 0.3)),
                           r0: jitter(11 * min(sx, sy), 0.1), r1: jitter(7 * min(sx, sy), 0.1))
        vertebra = (0, -26 * sy, 14 * min(sx, sy))
        canal = (0, -26 * sy - 21 * min(sx, sy), 6 * min(sx, sy))
        aorta = (-8 * sx, -26 * sy + 23 * min(sx, sy), 9 * min(sx, sy))
        var pockets: [(Double, Double, Double, Double)] = []
        for _ in 0..<14 {
            pockets.append(((2 * rng.nextUnit() - 1) * 45 * sx, (0.1 + 0.8 * rng.nextUnit()) * 45 * sy,
                            (2 * rng.nextUnit() - 1) * 70 * sz, (3 + 7 * rng.nextUnit()) * min(sx, sy)))
        }
        gasPockets = pockets.map { (x: $0.0, y: $0.1, z: $0.2, r: $0.3) }
        ribSpacing = 24 * sz
        ribPhase = rng.nextUnit() * ribSpacing
    }

    /// HU and label at voxel (i, j, k).
    @inline(__always) func voxel(_ i: Int, _ j: Int, _ k: Int) -> (Float, UInt8) {
        let x = Double(i) - hx + 0.5, y = Double(j) - hy + 0.5, z = Double(k) - hz + 0.5
        // Smooth boundary wobble (value noise, ~12 mm cells) and per-voxel Gaussian noise.
        let wobble = valueNoise(x / 12, y / 12, z / 12, channel: 1)
        let texture = Float(valueNoise(x / 5, y / 5, z / 5, channel: 2))
        let grain = gaussian(i, j, k)

        let body = (x / bodyA) * (x / bodyA) + (y / bodyB) * (y / bodyB)
        if body > 1 + 0.01 * wobble { return (HU.air + 5 * grain, 0) }
        // Depth below the skin along the ellipse normal, approximated from the normalised radius.
        let depth = (1 - body.squareRoot()) * min(bodyA, bodyB)
        if depth < fatThickness { return (HU.fat + 6 * texture + 12 * grain, 0) }

        // Spine and back muscles.
        let dv = hypot(x - vertebra.x, y - vertebra.y)
        if dv < vertebra.r {
            let cortex = dv > vertebra.r - 2.5
            return ((cortex ? HU.corticalBone : HU.cancellousBone) + 30 * texture + 25 * grain, 0)
        }
        let dc = hypot(x - canal.x, y - canal.y)
        if dc < canal.r { return (HU.csf + 8 * grain, 0) }
        // Posterior arch around the canal and the spinous process.
        if dc < canal.r + 4 && y < canal.y + 3 { return (HU.corticalBone - 150 + 25 * grain, 0) }
        if abs(x) < 3.5 && y < canal.y - canal.r && y > canal.y - canal.r - 16 { return (HU.corticalBone - 200 + 25 * grain, 0) }
        for side in [-1.0, 1.0] {
            let mx = (x - side * 26 * hx / 100) / (18 * hx / 100), my = (y - (canal.y - 4)) / (14 * hy / 80)
            if mx * mx + my * my < 1 { return (HU.muscle + 5 * texture + 10 * grain, 0) }
        }
        // Ribs: thin arcs in the outer wall, every `ribSpacing` mm along z, upper two thirds.
        if depth < fatThickness + muscleThickness + 4, z > -hz * 0.2, y < bodyB * 0.6 {
            let m = (z - ribPhase).truncatingRemainder(dividingBy: ribSpacing)
            let phase = m < 0 ? m + ribSpacing : m
            if phase < 7, depth > fatThickness + muscleThickness * 0.3 {
                return ((phase < 1.5 || phase > 5.5 ? HU.corticalBone : HU.cancellousBone) + 30 * grain, 0)
            }
        }
        if depth < fatThickness + muscleThickness { return (HU.muscle + 5 * texture + 10 * grain, 0) }
        if hypot(x - aorta.x, y - aorta.y) < aorta.r { return (HU.blood + 8 * grain, 0) }

        // Organs (later ones win where they touch).
        let w = 0.12 * wobble
        if kidneyR.q(x, y, z) < 1 + w { return kidney(x, y, z, kidneyR, texture, grain, id: 2) }
        if kidneyL.q(x, y, z) < 1 + w { return kidney(x, y, z, kidneyL, texture, grain, id: 3) }
        if pancreas.q(x, y, z) < 1 + 1.5 * w {
            return (HU.pancreas + 10 * texture + 12 * grain, 7)
        }
        if spleen.q(x, y, z) < 1 + w { return (HU.spleen + 6 * texture + 10 * grain, 1) }
        if liver.q(x, y, z) < 1 + w, body < 0.93 {
            // Hepatic vessels: a few darker tubes from the smooth noise's zero set.
            let vessel = abs(valueNoise(x / 9, y / 9, z / 9, channel: 3)) < 0.05
            return ((vessel ? HU.blood - 8 : HU.liver) + 6 * texture + 10 * grain, 5)
        }
        // Perirenal fat around the kidneys.
        if min(kidneyR.q(x, y, z), kidneyL.q(x, y, z)) < 1.8 { return (HU.fat + 10 * texture + 12 * grain, 0) }
        // Bowel and mesenteric fat, with gas pockets.
        for p in gasPockets {
            let dx = x - p.x, dy = y - p.y, dz = z - p.z
            if dx * dx + dy * dy + dz * dz < p.r * p.r { return (HU.gas + 40 * grain, 0) }
        }
        let mix = valueNoise(x / 7, y / 7, z / 7, channel: 4)
        if mix > 0.1 { return (HU.bowel + 10 * texture + 12 * grain, 0) }
        return (HU.fat + 20 * Float(mix) + 10 * grain, 0)
    }

    @inline(__always) func kidney(_ x: Double, _ y: Double, _ z: Double, _ e: Ellipsoid, _ t: Float, _ g: Float,
                                  id: UInt8) -> (Float, UInt8) {
        // Renal sinus fat at the medial side: not kidney parenchyma, so not labelled.
        let inner = Ellipsoid(c: (e.c.0 - (e.c.0 > 0 ? 1 : -1) * e.a.0 * 0.45, e.c.1, e.c.2),
                              a: (e.a.0 * 0.35, e.a.1 * 0.35, e.a.2 * 0.45))
        if inner.q(x, y, z) < 1 { return (HU.fat + 20 + 10 * g, 0) }
        return (HU.kidney + 5 * t + 10 * g, id)
    }

    // MARK: deterministic noise

    @inline(__always) func hash(_ a: Int, _ b: Int, _ c: Int, _ channel: UInt64) -> UInt64 {
        var h = seed &* 0x9E37_79B9_7F4A_7C15 ^ channel &* 0xD1B5_4A32_D192_ED03
        h ^= UInt64(bitPattern: Int64(a)) &* 0xBF58_476D_1CE4_E5B9
        h ^= UInt64(bitPattern: Int64(b)) &* 0x94D0_49BB_1331_11EB
        h ^= UInt64(bitPattern: Int64(c)) &* 0x2545_F491_4F6C_DD1D
        return SplitMix64.mix(h)
    }

    @inline(__always) func unit(_ h: UInt64) -> Double { Double(h >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Per-voxel standard normal (Box-Muller on two hashed uniforms).
    @inline(__always) func gaussian(_ i: Int, _ j: Int, _ k: Int) -> Float {
        let h = hash(i, j, k, 0)
        let u1 = max(unit(h), 1e-12), u2 = unit(SplitMix64.mix(h ^ 0x5851_F42D_4C95_7F2D))
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// Smooth value noise in [-1, 1]: lattice values trilinearly blended with a smoothstep.
    @inline(__always) func valueNoise(_ x: Double, _ y: Double, _ z: Double, channel: UInt64) -> Double {
        let fx = x.rounded(.down), fy = y.rounded(.down), fz = z.rounded(.down)
        let (i, j, k) = (Int(fx), Int(fy), Int(fz))
        func s(_ t: Double) -> Double { t * t * (3 - 2 * t) }
        let (tx, ty, tz) = (s(x - fx), s(y - fy), s(z - fz))
        func v(_ a: Int, _ b: Int, _ c: Int) -> Double { 2 * unit(hash(i + a, j + b, k + c, channel)) - 1 }
        let x00 = v(0, 0, 0) + tx * (v(1, 0, 0) - v(0, 0, 0)), x10 = v(0, 1, 0) + tx * (v(1, 1, 0) - v(0, 1, 0))
        let x01 = v(0, 0, 1) + tx * (v(1, 0, 1) - v(0, 0, 1)), x11 = v(0, 1, 1) + tx * (v(1, 1, 1) - v(0, 1, 1))
        let y0 = x00 + ty * (x10 - x00), y1 = x01 + ty * (x11 - x01)
        return y0 + tz * (y1 - y0)
    }
}

@inline(__always) func hypot(_ a: Double, _ b: Double) -> Double { (a * a + b * b).squareRoot() }
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }

import Foundation

