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

/// Checkpoint files go through the package's one safetensors implementation (Weights/Safetensors.swift).
enum SafetensorsFile {
    static func write(_ items: [(String, Tensor)], to url: URL) throws {
        try Safetensors.write(items.map { Safetensors.Item($0.0, $0.1) }, to: url.path, metadata: ["format": "pt"])
    }

    static func read(_ url: URL) throws -> [String: Tensor] {
        let dict: StateDict
        do { dict = try Safetensors.read(path: url.path) } catch {
            throw CheckpointError(path: url.path, problem: "is not a readable safetensors file (\(error))")
        }
        var out: [String: Tensor] = [:]
        for key in dict.keys { out[key] = try dict.tensor(key) }
        return out
    }
}
