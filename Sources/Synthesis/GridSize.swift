/// The shape of a 3D voxel grid in the pipeline's (X, Y, Z) layout, C order: Z varies fastest,
/// so voxel (x, y, z) sits at `(x * y_count + y) * z_count + z` (numpy's default for an
/// array of shape (X, Y, Z), which is what MONAI hands to the reference code).
public struct GridSize: Hashable, CustomStringConvertible, Sendable {
    public var x: Int, y: Int, z: Int

    public init(_ x: Int, _ y: Int, _ z: Int) {
        precondition(x >= 0 && y >= 0 && z >= 0, "negative grid size (\(x), \(y), \(z))")
        self.x = x; self.y = y; self.z = z
    }

    /// The 96³ patch of the reference.
    public static let patch = GridSize(Synthesis.patchSize, Synthesis.patchSize, Synthesis.patchSize)

    public var count: Int { x * y * z }
    public var dims: [Int] { [x, y, z] }
    public subscript(axis: Int) -> Int { axis == 0 ? x : (axis == 1 ? y : z) }

    @inline(__always)
    public func index(_ i: Int, _ j: Int, _ k: Int) -> Int { (i * y + j) * z + k }

    public var description: String { "\(x)×\(y)×\(z)" }
}
