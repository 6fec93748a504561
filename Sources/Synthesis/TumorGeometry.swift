import Imaging

/// One ellipsoid placed by `TumorGeometry`, for records and previews (patch voxel coordinates).
public struct PlacedTumor: Equatable, Sendable {
    public var sizeClass: TumorSizeClass
    /// Semi-axes (voxels) before deformation.
    public var radii: [Int]
    /// Elastic deformation sigma.
    public var sigma: Double
    /// Centre voxel in the patch.
    public var center: [Int]
}

/// The tumor mask of one patch, with what was drawn to make it.
public struct TumorMask: Equatable, Sendable {
    public var mask: MaskGrid
    public var sizeClass: TumorSizeClass
    public var tumors: [PlacedTumor]
    /// Kidney medium/large: whether the organ intersection was skipped (p = 0.5).
    public var skippedOrganIntersection: Bool
}

public struct TumorGeometryError: Error, CustomStringConvertible {
    public var description: String
}

/// Tumor masks exactly as STEP3 `get_fixed_geo` makes them (difftumor.md §4): per ellipsoid draw
/// three radii, the deformation sigma, three elastic deformations on axis pairs (0,1), (1,2),
/// (0,2), then a position by `random_select` (or the organ bounding-box centre for a large
/// pancreas tumor); sum the ellipsoids on the padded canvas, crop to the patch and intersect with
/// the organ (skipped with p = 0.5 for kidney medium/large). The canvas is not allocated: pasting
/// clipped to the patch gives the same crop, since no ellipsoid reaches past the margin.
///
/// Draw order per ellipsoid: rx, ry, rz, sigma, 3 × 18 normals, placement draws; then the
/// kidney coin. One difference from the reference, for robustness: if no organ voxel is left on
/// any slice after erosion (the reference would loop forever) the un-eroded slice is used after
/// `maxPlacementTries` tries, and a patch without organ voxels is an error instead of a crash.
public struct TumorGeometry {
    public var organ: Organ
    public var maxPlacementTries = 1000

    public init(organ: Organ) { self.organ = organ }

    public func generate(organMask: MaskGrid, sizeClass: TumorSizeClass,
                         rng: inout SynthRandom) throws -> TumorMask {
        let size = organMask.size
        guard let bbox = organMask.boundingBox else {
            throw TumorGeometryError(description: "tumor geometry: the \(size) patch holds no \(organ) voxel to place a \(sizeClass) tumor in")
        }
        var canvas = [UInt8](repeating: 0, count: size.count)
        var tumors: [PlacedTumor] = []
        let count = rng.randint(sizeClass.countRange.lowerBound, sizeClass.countRange.upperBound)
        for _ in 0..<count {
            let r = sizeClass.radiusRange
            let rx = rng.randint(r.lowerBound, r.upperBound)
            let ry = rng.randint(r.lowerBound, r.upperBound)
            let rz = rng.randint(r.lowerBound, r.upperBound)
            let sigma = sizeClass.drawSigma(&rng)
            var geo = TumorGeometry.deformedEllipsoid(radii: [rx, ry, rz], sigma: sigma, rng: &rng)

            let low: [Int], center: [Int]
            if sizeClass == .large && organ == .pancreas {
                // Crop the deformed ellipsoid to geo[start:end] of its non-zero extent (the end
                // index is exclusive there, so the last non-zero plane is dropped, as in the
                // reference), then centre it on the organ's bounding-box centre.
                if let gb = geo.boundingBox {
                    geo = geo.cropped(from: gb.min, to: gb.max)
                }
                center = (0..<3).map { pythonRound(0.5 * Double(bbox.max[$0] - bbox.min[$0])) + bbox.min[$0] }
                low = (0..<3).map { center[$0] - geo.size[$0] / 2 }
            } else {
                center = randomSelect(organMask, zRange: (bbox.min[2], bbox.max[2]), rng: &rng)
                low = (0..<3).map { center[$0] - geo.size[$0] / 2 }
            }
            canvas.addClipped(geo, at: low, canvasSize: size)
            tumors.append(PlacedTumor(sizeClass: sizeClass, radii: [rx, ry, rz], sigma: sigma, center: center))
        }

        var skip = false
        if organ == .kidney && (sizeClass == .medium || sizeClass == .large) {
            skip = rng.uniform() > 0.5
        }
        var mask = MaskGrid(zeros: size)
        for i in 0..<size.count {
            let v = canvas[i] >= 1 && (skip || organMask.voxels[i] != 0)
            mask.voxels[i] = v ? 1 : 0
        }
        return TumorMask(mask: mask, sizeClass: sizeClass, tumors: tumors, skippedOrganIntersection: skip)
    }

    /// The shape of one tumor: `get_ellipsoid(rx, ry, rz)` deformed by `deform_random_grid`
    /// (points 3, order 0) on axis pairs (0,1), (1,2), (0,2) with the same sigma.
    public static func deformedEllipsoid(radii r: [Int], sigma: Double, rng: inout SynthRandom) -> MaskGrid {
        var geo = MaskGrid.ellipsoid(r[0], r[1], r[2])
        // The ellipsoid fills [r, 3r] of its (4r) box; each deformation reports its output box.
        var box: (min: [Int], max: [Int])? = (r, r.map { 3 * $0 })
        for axes in [(0, 1), (1, 2), (0, 2)] {
            var displacement = [Double](repeating: 0, count: 18)
            for i in 0..<18 { displacement[i] = rng.normal() * sigma }
            guard let b = box else { continue }   // empty: the draws are still made, in order
            (geo, box) = ElasticDeform.deformGrid(geo, displacement: displacement, points: 3, axes: axes, nonzeroBox: b)
        }
        return geo
    }

    /// `random_select`: an axial slice z at fraction U(0.3,0.7) of the organ's z-extent (widening
    /// to 0.2–0.8, 0.1–0.9, 0–1 after 10/20/30 failures), eroded 5×5 for the liver, then a uniform
    /// organ voxel of that slice (scan order x-major, like `np.argwhere`).
    func randomSelect(_ organMask: MaskGrid, zRange: (Int, Int), rng: inout SynthRandom) -> [Int] {
        let size = organMask.size
        var flag = 0
        var slice = [UInt8](repeating: 0, count: size.x * size.y)
        while true {
            let (lo, hi): (Double, Double) = flag <= 10 ? (0.3, 0.7) : flag <= 20 ? (0.2, 0.8) : flag <= 30 ? (0.1, 0.9) : (0, 1)
            let z = pythonRound(rng.uniform(lo, hi) * Double(zRange.1 - zRange.0)) + zRange.0
            for x in 0..<size.x { for y in 0..<size.y { slice[x * size.y + y] = organMask[x, y, z] } }
            let erode = organ.erodesPlacementSlice && flag < maxPlacementTries
            if erode { slice = erode5x5(slice, nx: size.x, ny: size.y) }
            let candidates = slice.indices.filter { slice[$0] == 1 }
            if !candidates.isEmpty {
                let pick = candidates[rng.index(candidates.count)]
                return [pick / size.y, pick % size.y, z]
            }
            flag += 1
        }
    }
}

/// `cv2.erode` with a 5×5 box of ones, default border (pixels outside never erode).
func erode5x5(_ s: [UInt8], nx: Int, ny: Int) -> [UInt8] {
    // Separable: min over ±2 along y, then along x.
    var t = [UInt8](repeating: 0, count: s.count)
    for x in 0..<nx {
        for y in 0..<ny {
            var m: UInt8 = 255
            for d in -2...2 { let yy = y + d; if yy >= 0 && yy < ny { m = min(m, s[x * ny + yy]) } }
            t[x * ny + y] = m
        }
    }
    var out = [UInt8](repeating: 0, count: s.count)
    for x in 0..<nx {
        for y in 0..<ny {
            var m: UInt8 = 255
            for d in -2...2 { let xx = x + d; if xx >= 0 && xx < nx { m = min(m, t[xx * ny + y]) } }
            out[x * ny + y] = m
        }
    }
    return out
}

/// Python 3 `round()` to an integer: halves go to the even neighbour.
@inline(__always)
func pythonRound(_ v: Double) -> Int { Int(v.rounded(.toNearestOrEven)) }

extension MaskGrid {
    /// The sub-grid [from, to) per axis (end exclusive).
    func cropped(from lo: [Int], to hi: [Int]) -> MaskGrid {
        let s = GridSize(max(0, hi[0] - lo[0]), max(0, hi[1] - lo[1]), max(0, hi[2] - lo[2]))
        var out = MaskGrid(zeros: s)
        voxels.withUnsafeBufferPointer { src in
            out.voxels.withUnsafeMutableBufferPointer { dst in
                for x in 0..<s.x { for y in 0..<s.y {
                    let from = size.index(lo[0] + x, lo[1] + y, lo[2]), to = s.index(x, y, 0)
                    for z in 0..<s.z { dst[to + z] = src[from + z] }
                } }
            }
        }
        return out
    }
}

extension Array where Element == UInt8 {
    /// Adds `geo` with its corner at `low` into this canvas of `canvasSize`, clipped.
    mutating func addClipped(_ geo: MaskGrid, at low: [Int], canvasSize size: GridSize) {
        let gs = geo.size
        let x0 = Swift.max(0, -low[0]), x1 = Swift.min(gs.x, size.x - low[0])
        let y0 = Swift.max(0, -low[1]), y1 = Swift.min(gs.y, size.y - low[1])
        let z0 = Swift.max(0, -low[2]), z1 = Swift.min(gs.z, size.z - low[2])
        guard x0 < x1, y0 < y1, z0 < z1 else { return }
        geo.voxels.withUnsafeBufferPointer { g in
            self.withUnsafeMutableBufferPointer { c in
                for x in x0..<x1 {
                    for y in y0..<y1 {
                        let gRow = gs.index(x, y, 0), cRow = size.index(x + low[0], y + low[1], low[2])
                        for z in z0..<z1 { c[cRow + z] &+= g[gRow + z] }
                    }
                }
            }
        }
    }
}
