/// A weight file that cannot be read: names the file, the part of it (zip entry, pickle offset,
/// tensor key) and the problem. Thrown for malformed, truncated or hostile input; never a crash.
public struct WeightsError: Error, CustomStringConvertible {
    public enum Code: String, Sendable {
        case io = "cannot read file"
        case zip = "malformed zip container"
        case pickle = "malformed pickle"
        case unsupported = "unsupported content"
        case tensor = "invalid tensor"
        case safetensors = "malformed safetensors"
        case missingKey = "missing key"
        case shapeMismatch = "shape mismatch"
        case architecture = "cannot infer architecture"
    }

    public let code: Code
    public let file: String
    public let detail: String
    public let thrownAt: String

    public init(_ code: Code, file: String, _ detail: String, fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.file = file
        self.detail = detail
        self.thrownAt = "\(fileID):\(line)"
    }

    public var description: String {
        "\(code.rawValue) in \(file.isEmpty ? "<memory>" : file): \(detail) (thrown at \(thrownAt))"
    }
}
