/// A binary (0/1) or small-count UInt8 voxel grid in (X, Y, Z) C order: tumor masks, organ masks.
public struct MaskGrid: Equatable, Sendable {
    public var size: GridSize
    public var voxels: [UInt8]

    public init(size: GridSize, voxels: [UInt8]) {
        precondition(voxels.count == size.count, "mask of \(size) needs \(size.count) voxels, got \(voxels.count)")
        self.size = size
        self.voxels = voxels
    }

    public init(zeros size: GridSize) {
        self.size = size
        self.voxels = [UInt8](repeating: 0, count: size.count)
    }

    public subscript(x: Int, y: Int, z: Int) -> UInt8 {
        get { voxels[size.index(x, y, z)] }
        set { voxels[size.index(x, y, z)] = newValue }
    }

    /// Number of non-zero voxels.
    public var nonzeroCount: Int {
        voxels.withUnsafeBufferPointer { v in
            var n = 0
            for b in v where b != 0 { n += 1 }
            return n
        }
    }

    /// Inclusive bounding box (min, max) of the non-zero voxels per axis, nil when empty.
    public var boundingBox: (min: [Int], max: [Int])? {
        var lo = [Int.max, Int.max, Int.max], hi = [-1, -1, -1]
        voxels.withUnsafeBufferPointer { v in
            var i = 0
            for x in 0..<size.x {
                for y in 0..<size.y {
                    for z in 0..<size.z {
                        if v[i] != 0 {
                            if x < lo[0] { lo[0] = x }; if x > hi[0] { hi[0] = x }
                            if y < lo[1] { lo[1] = y }; if y > hi[1] { hi[1] = y }
                            if z < lo[2] { lo[2] = z }; if z > hi[2] { hi[2] = z }
                        }
                        i += 1
                    }
                }
            }
        }
        return hi[0] < 0 ? nil : (lo, hi)
    }
}

extension MaskGrid {
    /// The ellipsoid of `get_ellipsoid(rx, ry, rz)`: a (4rx, 4ry, 4rz) box whose voxel (i, j, k)
    /// is set iff ((i-2rx)/rx)² + ((j-2ry)/ry)² + ((k-2rz)/rz)² < 1. The coordinates are
    /// evaluated as numpy's `ogrid[-1:1:(2r+1)j]` does (start + n·step in Double), so voxels that
    /// sit exactly on the surface fall on the same side as in the reference.
    public static func ellipsoid(_ rx: Int, _ ry: Int, _ rz: Int) -> MaskGrid {
        precondition(rx > 0 && ry > 0 && rz > 0, "ellipsoid radii must be positive: (\(rx), \(ry), \(rz))")
        let size = GridSize(4 * rx, 4 * ry, 4 * rz)
        var out = MaskGrid(zeros: size)
        func squares(_ r: Int) -> [Double] {
            // bboxl = r, bboxh = 3r + 1; ogrid start (bboxl-com)/r = -1, stop (bboxh-com-1)/r = 1.
            let n = 2 * r + 1
            let start = Double(r - 2 * r) / Double(r), stop = Double(3 * r + 1 - 2 * r - 1) / Double(r)
            let step = (stop - start) / Double(n - 1)
            return (0..<n).map { let v = Double($0) * step + start; return v * v }
        }
        let sx = squares(rx), sy = squares(ry), sz = squares(rz)
        for i in 0..<sx.count {
            for j in 0..<sy.count {
                let sxy = sx[i] + sy[j]
                for k in 0..<sz.count where 1.0 - (sxy + sz[k]) > 0 {
                    out.voxels[size.index(rx + i, ry + j, rz + k)] = 1
                }
            }
        }
        return out
    }
}
