import Kernels

/// Preview of synthesized patches: for each tumor, axial, coronal and sagittal slices through its
/// centre, plain (top row) and with the tumor outlined in red (bottom row). Radiological display
/// of the (X, Y, Z) RAS patch: patient right on the image left, anterior / superior at the top.
/// CT values are the windowed [0, 1] values ([-175, 250] HU).
public struct PreviewImage {
    public var width: Int
    public var height: Int
    public var rgb: [UInt8]

    public static let zoom = 3

    public init(width: Int, height: Int, rgb: [UInt8]) {
        precondition(rgb.count == width * height * 3, "preview: \(rgb.count) bytes for \(width)×\(height)")
        self.width = width; self.height = height; self.rgb = rgb
    }

    /// One block (two rows of three panels) per tumor centre.
    public static func render(ct: Tensor, label: MaskGrid, centers: [[Int]]) -> PreviewImage {
        let size = label.size
        precondition(ct.shape == size.dims, "preview: ct \(ct.shape) vs label \(size)")
        let z = zoom
        let panelW = [size.x, size.x, size.y].map { $0 * z }
        let panelH = [size.y, size.z, size.z].map { $0 * z }
        let width = panelW.reduce(0, +) + 2 * 4
        let blockH = 2 * (panelH.max() ?? 0) + 4
        let height = max(1, centers.count) * (blockH + 8)
        var img = PreviewImage(width: width, height: height, rgb: [UInt8](repeating: 24, count: width * height * 3))
        let values = ct.scalars
        for (t, c) in centers.enumerated() {
            let top = t * (blockH + 8)
            var left = 0
            for view in 0..<3 {
                // (rows, cols) of the panel and the voxel of (row, col).
                let (rows, cols) = (panelH[view] / z, panelW[view] / z)
                func voxel(_ r: Int, _ col: Int) -> Int {
                    switch view {
                    case 0: return size.index(size.x - 1 - col, size.y - 1 - r, c[2])   // axial
                    case 1: return size.index(size.x - 1 - col, c[1], size.z - 1 - r)   // coronal
                    default: return size.index(c[0], size.y - 1 - col, size.z - 1 - r) // sagittal
                    }
                }
                func isTumor(_ r: Int, _ col: Int) -> Bool {
                    r >= 0 && r < rows && col >= 0 && col < cols && label.voxels[voxel(r, col)] == 2
                }
                for half in 0..<2 {
                    let y0 = top + half * (panelH.max()! + 4)
                    for r in 0..<rows { for col in 0..<cols {
                        let v = UInt8(max(0, min(255, (values[voxel(r, col)] * 255).rounded())))
                        var px = (v, v, v)
                        if half == 1 && isTumor(r, col) &&
                            (!isTumor(r - 1, col) || !isTumor(r + 1, col) || !isTumor(r, col - 1) || !isTumor(r, col + 1)) {
                            px = (255, 40, 40)
                        }
                        for dy in 0..<z { for dx in 0..<z {
                            img.set(x: left + col * z + dx, y: y0 + r * z + dy, px)
                        } }
                    } }
                }
                left += panelW[view] + 4
            }
        }
        return img
    }

    mutating func set(x: Int, y: Int, _ p: (UInt8, UInt8, UInt8)) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let i = (y * width + x) * 3
        rgb[i] = p.0; rgb[i + 1] = p.1; rgb[i + 2] = p.2
    }

    public var png: [UInt8] { PNGEncoder.encodeRGB(width: width, height: height, rgb: rgb) }

    /// A voxel of the tumor (label 2) to centre the views on: the placement centre when it is in
    /// the tumor, else the tumor voxel closest to it; nil when the tumor has no voxel.
    public static func viewCenter(near c: [Int], label: MaskGrid) -> [Int]? {
        let s = label.size
        if c.indices.allSatisfy({ c[$0] >= 0 && c[$0] < s[$0] }), label[c[0], c[1], c[2]] == 2 { return c }
        var best: [Int]? = nil, bestD = Int.max
        for x in 0..<s.x { for y in 0..<s.y { for z in 0..<s.z where label[x, y, z] == 2 {
            let d = (x - c[0]) * (x - c[0]) + (y - c[1]) * (y - c[1]) + (z - c[2]) * (z - c[2])
            if d < bestD { bestD = d; best = [x, y, z] }
        } } }
        return best
    }
}
