import Foundation

/// A 4×4 voxel-to-world matrix (NIfTI/nibabel convention: world is RAS+ millimetres, the voxel
/// index (i, j, k, 1) is a column vector, `world = affine · index`). Stored row-major.
public struct Affine: Equatable, Sendable, CustomStringConvertible {
    /// Row-major 4×4 entries: `m[4 * row + column]`.
    public var m: [Double]

    public init(rowMajor m: [Double]) {
        precondition(m.count == 16, "an affine has 16 entries, got \(m.count)")
        self.m = m
    }

    public init(rows: [[Double]]) {
        precondition(rows.count == 4 && rows.allSatisfy { $0.count == 4 }, "an affine is 4×4, got \(rows)")
        self.m = rows.flatMap { $0 }
    }

    public static let identity = Affine(rowMajor: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])

    /// A diagonal affine with the given spacing and origin (the world position of voxel 0).
    public static func diagonal(spacing: [Double], origin: [Double] = [0, 0, 0]) -> Affine {
        precondition(spacing.count == 3 && origin.count == 3)
        return Affine(rowMajor: [spacing[0], 0, 0, origin[0],
                                 0, spacing[1], 0, origin[1],
                                 0, 0, spacing[2], origin[2],
                                 0, 0, 0, 1])
    }

    public subscript(row: Int, column: Int) -> Double {
        get { m[4 * row + column] }
        set { m[4 * row + column] = newValue }
    }

    /// The matrix as four rows of four values (handy for headers and JSON).
    public var rows: [[Double]] { (0..<4).map { r in Array(m[(4 * r)..<(4 * r + 4)]) } }

    /// Voxel size along each voxel axis: the Euclidean norm of the first three columns.
    public var spacing: [Double] {
        (0..<3).map { c in ((0..<3).map { r in self[r, c] * self[r, c] }.reduce(0, +)).squareRoot() }
    }

    /// World position of voxel (0, 0, 0).
    public var origin: [Double] { [self[0, 3], self[1, 3], self[2, 3]] }

    /// World position of a (possibly fractional) voxel index.
    public func apply(_ index: [Double]) -> [Double] {
        precondition(index.count == 3)
        return (0..<3).map { r in self[r, 0] * index[0] + self[r, 1] * index[1] + self[r, 2] * index[2] + self[r, 3] }
    }

    public static func * (a: Affine, b: Affine) -> Affine {
        var out = [Double](repeating: 0, count: 16)
        for r in 0..<4 {
            for c in 0..<4 {
                var s = 0.0
                for k in 0..<4 { s += a.m[4 * r + k] * b.m[4 * k + c] }
                out[4 * r + c] = s
            }
        }
        return Affine(rowMajor: out)
    }

    /// The inverse, or nil when the 3×3 part is singular.
    public var inverse: Affine? {
        // Gauss-Jordan on the 4×4 matrix with partial pivoting.
        var a = m
        var inv = Affine.identity.m
        for col in 0..<4 {
            var pivot = col
            for r in col..<4 where abs(a[4 * r + col]) > abs(a[4 * pivot + col]) { pivot = r }
            if abs(a[4 * pivot + col]) < 1e-12 { return nil }
            if pivot != col {
                for c in 0..<4 { a.swapAt(4 * pivot + c, 4 * col + c); inv.swapAt(4 * pivot + c, 4 * col + c) }
            }
            let p = a[4 * col + col]
            for c in 0..<4 { a[4 * col + c] /= p; inv[4 * col + c] /= p }
            for r in 0..<4 where r != col {
                let f = a[4 * r + col]
                if f == 0 { continue }
                for c in 0..<4 { a[4 * r + c] -= f * a[4 * col + c]; inv[4 * r + c] -= f * inv[4 * col + c] }
            }
        }
        return Affine(rowMajor: inv)
    }

    /// Whether two affines agree within `tolerance` in every entry (millimetres for the translation).
    public func isClose(to other: Affine, tolerance: Double = 1e-4) -> Bool {
        zip(m, other.m).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($0), abs($1)) }
    }

    /// Orientation code as nibabel's `aff2axcodes` gives it: for each voxel axis, the world
    /// direction that increasing index points to (R/L, A/P, S/I), e.g. "RAS" or "LPS".
    public var orientationCode: String {
        let axes = dominantWorldAxes()
        let letters: [(Character, Character)] = [("R", "L"), ("A", "P"), ("S", "I")]
        return String((0..<3).map { c -> Character in
            let w = axes[c]
            return self[w, c] >= 0 ? letters[w].0 : letters[w].1
        })
    }

    /// For each voxel axis (column), the world axis (row) it runs along, chosen as a permutation:
    /// the largest absolute entry first, then the largest among the remaining rows and columns.
    public func dominantWorldAxes() -> [Int] {
        var result = [Int](repeating: -1, count: 3)
        var usedRows = Set<Int>(), usedCols = Set<Int>()
        for _ in 0..<3 {
            var best = (-1.0, 0, 0)
            for r in 0..<3 where !usedRows.contains(r) {
                for c in 0..<3 where !usedCols.contains(c) {
                    // Normalise by the column length so anisotropic spacing does not bias the choice.
                    let v = abs(self[r, c]) / max(spacing[c], 1e-12)
                    if v > best.0 { best = (v, r, c) }
                }
            }
            result[best.2] = best.1
            usedRows.insert(best.1); usedCols.insert(best.2)
        }
        return result
    }

    public var description: String {
        rows.map { "[" + $0.map { String(format: "%.4f", $0) }.joined(separator: ", ") + "]" }.joined(separator: "\n")
    }
}
