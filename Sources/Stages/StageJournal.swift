import Foundation

/// What a stage replica has done with the current stream, as far as its neighbours' accounting
/// needs it: kept in a small file (`runtime.state_dir/NAME.K.journal`) rewritten in place after
/// every message, so that a process killed without warning leaves it behind. A restarted replica
/// takes it over when the stream it receives is the same (`streamID`), and so does not count the
/// patches its predecessor handled as lost. (The file lives in the page cache: it survives the
/// process, not the machine.)
public struct JournalState: Equatable, Sendable {
    public var streamID: UInt64 = 0
    /// Messages read from the input (patches; markers not counted).
    public var received: UInt64 = 0
    /// Patches handed downstream (a sink: delivered).
    public var emitted: UInt64 = 0
    /// Patches rejected, by reason.
    public var rejected: [String: UInt64] = [:]
    /// Messages sent to each downstream replica (the counts its end-of-stream markers announce).
    public var sent: [UInt64] = []
    /// End-of-stream markers seen: sender → announced count.
    public var markers: [String: UInt64] = [:]

    public init() {}

    public var rejectedTotal: UInt64 { rejected.values.reduce(0, +) }

    /// Patches the replica had read but neither handed on nor rejected: in hand when it died.
    public var inHand: UInt64 {
        let done = emitted + rejectedTotal
        return received > done ? received - done : 0
    }

    static let size = 4096

    /// One line of `key=value` fields, padded with spaces to `size` bytes.
    public func encoded() -> [UInt8] {
        func map(_ m: [String: UInt64]) -> String {
            m.isEmpty ? "-" : m.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")
        }
        let line = "tumord-journal v1 stream=\(streamID) received=\(received) emitted=\(emitted)"
            + " sent=\(sent.isEmpty ? "-" : sent.map(String.init).joined(separator: ","))"
            + " rejected=\(map(rejected)) markers=\(map(markers))\n"
        var bytes = Array(line.utf8)
        if bytes.count < JournalState.size { bytes += Array(repeating: 0x20, count: JournalState.size - bytes.count) }
        return bytes
    }

    /// Parses `encoded()`; nil for anything else (a foreign or torn file is ignored, not trusted).
    public static func decode(_ text: String) -> JournalState? {
        let line = text.split(separator: "\n").first.map(String.init) ?? ""
        let parts = line.split(separator: " ")
        guard parts.count == 8, parts[0] == "tumord-journal", parts[1] == "v1" else { return nil }
        var fields: [String: String] = [:]
        for p in parts.dropFirst(2) {
            let kv = p.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { return nil }
            fields[String(kv[0])] = String(kv[1])
        }
        func map(_ s: String?) -> [String: UInt64]? {
            guard let s else { return nil }
            if s == "-" { return [:] }
            var m: [String: UInt64] = [:]
            for item in s.split(separator: ",") {
                guard let colon = item.lastIndex(of: ":"), let v = UInt64(item[item.index(after: colon)...]) else { return nil }
                m[String(item[..<colon])] = v
            }
            return m
        }
        var j = JournalState()
        guard let stream = fields["stream"].flatMap({ UInt64($0) }), let received = fields["received"].flatMap({ UInt64($0) }),
              let emitted = fields["emitted"].flatMap({ UInt64($0) }), let sent = fields["sent"],
              let rejected = map(fields["rejected"]), let markers = map(fields["markers"]) else { return nil }
        j.streamID = stream
        j.received = received
        j.emitted = emitted
        j.rejected = rejected
        j.markers = markers
        if sent != "-" {
            let counts = sent.split(separator: ",").map { UInt64($0) }
            guard counts.allSatisfy({ $0 != nil }) else { return nil }
            j.sent = counts.map { $0! }
        }
        return j
    }
}

/// The journal file of one replica.
final class StageJournal {
    let path: String
    private var fd: Int32 = -1

    init(directory: String, stage: String, replica: Int) {
        path = (directory as NSString).appendingPathComponent("\(stage).\(replica).journal")
    }

    /// What a previous process of this replica left, if anything readable.
    func previous() -> JournalState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return JournalState.decode(String(decoding: data, as: UTF8.self))
    }

    struct JournalError: Error, CustomStringConvertible {
        let description: String
    }

    func open() throws {
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw JournalError(description: "state directory \(dir): \(error)")
        }
        fd = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw JournalError(description: "journal \(path): \(String(cString: strerror(errno)))") }
    }

    /// Rewrites the file in place (one `pwrite`; no fsync: it must outlive the process only).
    func write(_ state: JournalState) {
        guard fd >= 0 else { return }
        let bytes = state.encoded()
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// The stream ended cleanly: nothing for a successor to take over.
    func remove() {
        close()
        unlink(path)
    }

    func close() {
        if fd >= 0 { Foundation.close(fd); fd = -1 }
    }

    deinit { close() }
}
