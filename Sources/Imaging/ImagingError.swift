/// An error of the imaging layer: names the file (or field) and the problem in one sentence.
public struct ImagingError: Error, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable {
        case missingFile = "file not found"
        case notNIfTI = "not a NIfTI file"
        case truncated = "truncated or corrupt data"
        case unsupportedDatatype = "unsupported datatype"
        case multipleVolumes = "more than one volume"
        case badGeometry = "bad geometry"
        case nanVoxels = "NaN or infinite voxels"
        case gridMismatch = "CT and label grids differ"
        case badLabel = "bad label values"
        case writeFailed = "cannot write"
        case badManifest = "bad manifest"
    }

    public var code: Code
    public var path: String
    public var detail: String
    public var fileID: String
    public var line: Int

    public init(_ code: Code, path: String, _ detail: String, fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.path = path
        self.detail = detail
        self.fileID = fileID
        self.line = line
    }

    public var description: String {
        "\(path): \(code.rawValue): \(detail)"
    }

    public static func == (a: ImagingError, b: ImagingError) -> Bool {
        a.code == b.code && a.path == b.path && a.detail == b.detail
    }
}
