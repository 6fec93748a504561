import Kernels

/// One case ready for cropping: CT windowed to [0,1] (HU [-175, 250]) in canonical RAS at 1 mm,
/// and labels 0 background, 1 the configured organ, 2 real tumor.
public struct LoadedCase {
    public var name: String
    /// [X, Y, Z].
    public var ct: Tensor
    public var labels: [UInt8]
    /// 4×4 voxel → world, row-major.
    public var affine: [Double]
    public var spacing: [Double]
    /// Healthy cases are eligible for synthesis; scans with real tumors pass unchanged.
    public var healthy: Bool

    public init(name: String, ct: Tensor, labels: [UInt8], affine: [Double], spacing: [Double], healthy: Bool) {
        precondition(ct.rank == 3 && labels.count == ct.count, "case \(name): CT \(ct.shape) and \(labels.count) labels differ")
        self.name = name
        self.ct = ct
        self.labels = labels
        self.affine = affine
        self.spacing = spacing
        self.healthy = healthy
    }
}

/// Where the loader's cases come from: the built-in phantom or a dataset manifest.
public protocol CaseProvider: AnyObject {
    var caseCount: Int { get }
    /// Loads and preprocesses case `index` (0..<caseCount); throws a clear error for bad files.
    func load(_ index: Int) throws -> LoadedCase
}
