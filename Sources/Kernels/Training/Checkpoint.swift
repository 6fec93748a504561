import Foundation

/// A trainer checkpoint on disk:
/// ```
/// DIR/latest                      text: the name of the newest complete checkpoint folder
/// DIR/step-00000120/model.safetensors      UNet weights under MONAI's names (F32)
/// DIR/step-00000120/optimizer.safetensors  AdamW moments: exp_avg.NAME, exp_avg_sq.NAME
/// DIR/step-00000120/trainer.json           step and TrainerConfig
/// ```
/// A folder is written under a temporary name and renamed when complete, and `latest` is
/// replaced atomically after that, so a kill at any moment leaves the previous checkpoint usable.
struct Checkpoint {
    var config: TrainerConfig
    var step: Int
    var weights: [String: Tensor]
    var optimizerState: [String: Tensor]

    struct Meta: Codable { var step: Int; var config: TrainerConfig }

    static func latest(in directory: URL) -> URL? {
        let pointer = directory.appendingPathComponent("latest")
        guard let name = try? String(contentsOf: pointer, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty else { return nil }
        return directory.appendingPathComponent(name)
    }

    static func load(from directory: URL) throws -> Checkpoint {
        guard let dir = latest(in: directory) else {
            throw CheckpointError(path: directory.appendingPathComponent("latest").path, problem: "is missing or empty")
        }
        let metaURL = dir.appendingPathComponent("trainer.json")
        let meta: Meta
        do { meta = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: metaURL)) } catch {
            throw CheckpointError(path: metaURL.path, problem: "cannot be read: \(error)")
        }
        return Checkpoint(config: meta.config, step: meta.step,
                          weights: try SafetensorsFile.read(dir.appendingPathComponent("model.safetensors")),
                          optimizerState: try SafetensorsFile.read(dir.appendingPathComponent("optimizer.safetensors")))
    }

    func save(to directory: URL, order: [String]) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let name = String(format: "step-%08d", step)
        let tmp = directory.appendingPathComponent(name + ".tmp-\(getpid())")
        let final = directory.appendingPathComponent(name)
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        try SafetensorsFile.write(order.compactMap { k in weights[k].map { (k, $0) } }, to: tmp.appendingPathComponent("model.safetensors"))
        let optOrder = order.flatMap { ["exp_avg." + $0, "exp_avg_sq." + $0] }
        try SafetensorsFile.write(optOrder.compactMap { k in optimizerState[k].map { (k, $0) } },
                                  to: tmp.appendingPathComponent("optimizer.safetensors"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(Meta(step: step, config: config)).write(to: tmp.appendingPathComponent("trainer.json"))
        try? fm.removeItem(at: final)
        try fm.moveItem(at: tmp, to: final)
        try Data((name + "\n").utf8).write(to: directory.appendingPathComponent("latest"), options: .atomic)
        // Keep the two newest complete checkpoints.
        let steps = (try? fm.contentsOfDirectory(atPath: directory.path))?
            .filter { $0.hasPrefix("step-") && !$0.contains(".tmp") }.sorted() ?? []
        for old in steps.dropLast(2) where old != name { try? fm.removeItem(at: directory.appendingPathComponent(old)) }
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public var path: String
    public var problem: String
    public var description: String { "checkpoint \(path) \(problem)" }
}

/// The safetensors format for F32 tensors (8-byte little-endian header length, JSON header
/// `{name: {dtype, shape, data_offsets}}`, raw data), enough for the trainer's checkpoints.
enum SafetensorsFile {
    static func write(_ items: [(String, Tensor)], to url: URL) throws {
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        var offset = 0
        for (name, t) in items {
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]]
            offset += 4 * t.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for (_, t) in items { t.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: $0.baseAddress, count: $0.count)) } }
        try data.write(to: url, options: .atomic)
    }

    static func read(_ url: URL) throws -> [String: Tensor] {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: url.path, problem: problem) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw fail("cannot be read: \(error.localizedDescription)") }
        guard data.count >= 8 else { throw fail("is shorter than the 8-byte safetensors header length") }
        let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(data.count - 8) else { throw fail("declares a \(n)-byte header in a \(data.count)-byte file") }
        let body = data.dropFirst(8 + Int(n))
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + Int(n)))) as? [String: Any] else {
            throw fail("has an unreadable JSON header")
        }
        var out: [String: Tensor] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let e = value as? [String: Any], let dtype = e["dtype"] as? String, let shape = e["shape"] as? [Int],
                  let offsets = e["data_offsets"] as? [Int], offsets.count == 2 else { throw fail("entry \(name) is malformed") }
            guard dtype == "F32" else { throw fail("entry \(name) has dtype \(dtype); the trainer reads F32 only") }
            let count = Tensor.elementCount(shape)
            guard offsets[1] - offsets[0] == 4 * count, offsets[0] >= 0, offsets[1] <= body.count else {
                throw fail("entry \(name) has offsets \(offsets) for shape \(shape) in \(body.count) data bytes")
            }
            var t = Tensor(uninitialized: shape)
            t.withUnsafeMutableBufferPointer { p in
                _ = body.dropFirst(offsets[0]).prefix(4 * count).copyBytes(to: UnsafeMutableRawBufferPointer(p))
            }
            out[name] = t
        }
        return out
    }
}
