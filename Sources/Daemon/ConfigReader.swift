import Foundation
import Stages
import Yams

/// Reads one YAML mapping key by key, remembering the key path for errors and which keys were
/// read: `finish()` rejects every key nobody asked for, so a typo is an error naming the key,
/// not a silently ignored setting.
final class ConfigReader {
    let path: String
    private var entries: [(key: String, value: Node)] = []
    private var used: Set<String> = []

    init(_ node: Node, path: String) throws {
        self.path = path
        guard case .mapping(let mapping) = node else {
            throw ConfigError(keyPath: path.isEmpty ? "(top level)" : path, "must be a mapping of key: value, got \(ConfigReader.kind(node))")
        }
        for (k, v) in mapping {
            guard let key = k.string else { throw ConfigError(keyPath: path, "has a key that is not a string") }
            if entries.contains(where: { $0.key == key }) {
                throw ConfigError(keyPath: child(key), "appears twice")
            }
            entries.append((key, v))
        }
    }

    static func kind(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    var keys: [String] { entries.map(\.key) }

    /// The raw node for `key`; nil when absent or null.
    func node(_ key: String) -> Node? {
        used.insert(key)
        guard let v = entries.first(where: { $0.key == key })?.value else { return nil }
        if case .scalar(let s) = v, v.null != nil, s.style == .plain || s.style == .any { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = node(key) else { return nil }
        guard case .scalar(let s) = v else { throw ConfigError(keyPath: child(key), "must be a string, got \(ConfigReader.kind(v))") }
        return s.string
    }

    func string<E: RawRepresentable & CaseIterable>(_ key: String, as: E.Type) throws -> E? where E.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let e = E(rawValue: s) else {
            throw ConfigError(keyPath: child(key), "must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
        }
        return e
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = node(key) else { return nil }
        guard case .scalar = v, let i = v.int else {
            throw ConfigError(keyPath: child(key), "must be an integer, got \(ConfigReader.kind(v))")
        }
        guard range.contains(i) else {
            throw ConfigError(keyPath: child(key), "must be in \(range.lowerBound)...\(range.upperBound), got \(i)")
        }
        return i
    }

    func double(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = node(key) else { return nil }
        guard case .scalar = v, let d = v.float ?? v.int.map(Double.init), d.isFinite else {
            throw ConfigError(keyPath: child(key), "must be a number, got \(ConfigReader.kind(v))")
        }
        guard range.contains(d) else {
            throw ConfigError(keyPath: child(key), "must be in \(range.lowerBound)...\(range.upperBound), got \(d)")
        }
        return d
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = node(key) else { return nil }
        guard case .scalar = v, let b = v.bool else {
            throw ConfigError(keyPath: child(key), "must be true or false, got \(ConfigReader.kind(v))")
        }
        return b
    }

    func mapping(_ key: String) throws -> ConfigReader? {
        guard let v = node(key) else { return nil }
        return try ConfigReader(v, path: child(key))
    }

    func stringList(_ key: String) throws -> [String]? {
        guard let v = node(key) else { return nil }
        guard case .sequence(let seq) = v else {
            throw ConfigError(keyPath: child(key), "must be a list, got \(ConfigReader.kind(v))")
        }
        return try seq.enumerated().map { i, item in
            guard case .scalar(let s) = item else {
                throw ConfigError(keyPath: "\(child(key))[\(i)]", "must be a string, got \(ConfigReader.kind(item))")
            }
            return s.string
        }
    }

    func intList(_ key: String, count: Int, in range: ClosedRange<Int>) throws -> [Int]? {
        guard let v = node(key) else { return nil }
        guard case .sequence(let seq) = v, seq.count == count else {
            throw ConfigError(keyPath: child(key), "must be a list of \(count) integers, got \(ConfigReader.kind(v))")
        }
        return try seq.enumerated().map { i, item in
            guard let n = item.int, range.contains(n) else {
                throw ConfigError(keyPath: "\(child(key))[\(i)]", "must be an integer in \(range.lowerBound)...\(range.upperBound), got \(ConfigReader.kind(item))")
            }
            return n
        }
    }

    func intListAnyLength(_ key: String, in range: ClosedRange<Int>) throws -> [Int]? {
        guard let v = node(key) else { return nil }
        guard case .sequence(let seq) = v else {
            throw ConfigError(keyPath: child(key), "must be a list of integers, got \(ConfigReader.kind(v))")
        }
        return try intList(key, count: seq.count, in: range)
    }

    /// Every key must have been read.
    func finish(allowed: [String]? = nil) throws {
        for key in keys where !used.contains(key) {
            let known = (allowed ?? Array(used)).sorted().joined(separator: ", ")
            throw ConfigError(keyPath: child(key), "unknown key (known keys here: \(known))")
        }
    }
}
