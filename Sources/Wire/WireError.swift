/// A message the receiver cannot read. The stage counts it (by `code`), logs `description` and
/// keeps running.
public struct WireError: Error, CustomStringConvertible {
    /// Why a message was rejected; `description` is a stable short name, good as a counter key.
    public struct Code: Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The protobuf header does not parse, or a header field holds an impossible value.
        public static let malformed = Code("malformed")
        /// Fewer frames or fewer bytes than the header announces.
        public static let truncated = Code("truncated")
        /// A schema version this build does not read.
        public static let wrongVersion = Code("wrong-version")
        /// A payload whose dtype, shape, byte length or frame size disagree.
        public static let badPayload = Code("bad-payload")
        /// A message of another kind than expected (e.g. a status request where a patch belongs).
        public static let unexpectedMessage = Code("unexpected-message")
        public var description: String { name }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: Int

    public init(_ code: Code, _ reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "rejected message (\(code)): \(reason) [\(file):\(line)]" }
}
