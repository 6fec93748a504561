import Wire

/// What a stage does to each patch. Called only on the stage's own thread, one patch at a time.
public protocol PatchProcessor: AnyObject {
    /// Returns the patch to send downstream, or `nil` when this stage consumes it (a sink: writer,
    /// trainer). Throwing a `StageRejection` counts the patch as rejected with that reason; any
    /// other error is counted under `error` with its description as the stage's last error.
    func process(_ patch: PatchMessage) throws -> PatchMessage?
    /// End of stream or shutdown: flush files, write a checkpoint. Called once per replica.
    func finish() throws
    /// Stage-specific counters for status replies (e.g. `synthesized`, `passed_through`).
    func counters() -> [(name: String, value: UInt64)]
    /// Stage-specific measurements for status lines (e.g. the trainer's loss).
    func gauges() -> [(name: String, value: Double)]
}

extension PatchProcessor {
    public func finish() throws {}
    public func counters() -> [(name: String, value: UInt64)] { [] }
    public func gauges() -> [(name: String, value: Double)] { [] }
}

/// The first stage: produces patches (or volumes) instead of reading them.
public protocol PatchSource: AnyObject {
    /// The next message to send, or `nil` when the source is exhausted (`--max-patches`, end of
    /// the manifest). Throwing a `StageRejection` counts one rejected item and goes on.
    func next() throws -> PatchMessage?
    func finish() throws
    func counters() -> [(name: String, value: UInt64)]
}

extension PatchSource {
    public func finish() throws {}
    public func counters() -> [(name: String, value: UInt64)] { [] }
}

/// A patch a stage decided not to pass on, with a short reason used as a counter key
/// (`no-organ`, `nan-voxels`, `bad-payload`, ...). Rejections are counted and logged, never silent.
public struct StageRejection: Error, CustomStringConvertible {
    public let reason: String
    public let detail: String
    public let file: String
    public let line: Int

    public init(_ reason: String, _ detail: String, file: String = #fileID, line: Int = #line) {
        self.reason = reason
        self.detail = detail
        self.file = file
        self.line = line
    }

    public var description: String { "patch rejected (\(reason)): \(detail) [\(file):\(line)]" }
}

/// A stage that forwards every patch unchanged: the encoder and sampler of the procedural engine,
/// and a building block for tests.
public final class PassThroughProcessor: PatchProcessor {
    private var forwarded: UInt64 = 0
    public init() {}
    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        forwarded += 1
        return patch
    }
    public func counters() -> [(name: String, value: UInt64)] { [("passed_through", forwarded)] }
}
