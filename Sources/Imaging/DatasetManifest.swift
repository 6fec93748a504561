import Foundation

/// One case of a dataset: a CT, its organ label map(s), and whether it is healthy.
public struct DatasetCase: Equatable, Sendable {
    public enum Labels: Equatable, Sendable {
        /// One multi-label file (TotalSegmentator style), read with an `OrganMap`.
        case multiLabel(path: String, organs: OrganMap)
        /// Binary files per organ (AbdomenAtlas `segmentations/<organ>.nii.gz`; kidneys may be two files).
        case perOrgan([Organ: [String]])
    }

    public var name: String
    public var ctPath: String
    public var labels: Labels
    /// Healthy scans get synthetic tumors; scans with real tumors pass through unchanged.
    public var healthy: Bool

    public init(name: String, ctPath: String, labels: Labels, healthy: Bool) {
        self.name = name
        self.ctPath = ctPath
        self.labels = labels
        self.healthy = healthy
    }

    /// Reads the CT and a label map in TumorStream's convention for this case: each organ gets
    /// `organs`' id of the first id of that organ (TotalSegmentator ids by default), checked on one grid.
    public func load(ids organs: OrganMap = .totalSegmentator) throws -> (Volume, LabelVolume) {
        let ct = try NIfTI.readVolume(ctPath)
        switch labels {
        case let .multiLabel(path, map):
            let raw = try NIfTI.readLabels(path)
            try ct.checkSameGrid(as: raw, ctPath: ctPath, labelPath: path)
            var table = [UInt8](repeating: 0, count: 256)
            for (organ, srcIDs) in map.ids {
                guard let dst = organs.id(of: organ) else { continue }
                for s in srcIDs { table[Int(s)] = dst }
            }
            // Keep ids the map does not mention only when the maps are the same (no remapping).
            if map == organs { return (ct, raw) }
            return (ct, LabelVolume(labels: raw.labels.map { table[Int($0)] }, shape: raw.shape, affine: raw.affine))
        case let .perOrgan(files):
            var out = LabelVolume(zerosLike: ct)
            for organ in Organ.allCases {
                guard let paths = files[organ], let dst = organs.id(of: organ) else { continue }
                for path in paths {
                    let mask = try NIfTI.readLabels(path)
                    try ct.checkSameGrid(as: mask, ctPath: ctPath, labelPath: path)
                    for i in 0..<mask.labels.count where mask.labels[i] != 0 { out.labels[i] = dst }
                }
            }
            return (ct, out)
        }
    }
}

/// A plain-text list of cases. One case per line, whitespace-separated fields:
///
///     # name   ct                     label                       organs                         status
///     case01   scans/c01_ct.nii.gz    scans/c01_seg.nii.gz         liver=5,pancreas=7,kidney=2+3  healthy
///     case02   atlas/BDMAP_0001       -                            -                              tumor
///
/// `organs` may be `-` for the TotalSegmentator ids; `status` is `healthy` or `tumor`. A `ct`
/// that is a directory with `label` `-` is an AbdomenAtlas case folder (`ct.nii.gz` +
/// `segmentations/<organ>.nii.gz`). Relative paths are relative to the manifest's folder.
/// Blank lines and `#` comments are ignored.
public struct DatasetManifest: Equatable, Sendable {
    public var cases: [DatasetCase]

    public init(cases: [DatasetCase]) { self.cases = cases }

    public static func read(_ path: String) throws -> DatasetManifest {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ImagingError(.missingFile, path: path, "manifest not found")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ImagingError(.badManifest, path: path, "manifest is not UTF-8 text")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        return try parse(text, baseDirectory: base, source: path)
    }

    public static func parse(_ text: String, baseDirectory: URL, source: String = "manifest") throws -> DatasetManifest {
        var cases: [DatasetCase] = []
        for (n, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if f.isEmpty { continue }
            let at = "\(source) line \(n + 1)"
            guard f.count == 5 else {
                throw ImagingError(.badManifest, path: at, "expected 5 fields (name ct label organs status), found \(f.count)")
            }
            let healthy: Bool
            switch f[4].lowercased() {
            case "healthy": healthy = true
            case "tumor", "tumour", "tumors": healthy = false
            default: throw ImagingError(.badManifest, path: at, "status must be healthy or tumor, got \(f[4])")
            }
            let organs: OrganMap
            do { organs = f[3] == "-" ? .totalSegmentator : try OrganMap.parse(f[3]) } catch let e as ImagingError {
                throw ImagingError(.badManifest, path: at, e.detail)
            }
            func resolve(_ p: String) -> String {
                p.hasPrefix("/") ? p : base(baseDirectory, p)
            }
            let ct = resolve(f[1])
            if f[2] == "-" {
                cases.append(try AbdomenAtlas.case(at: ct, healthy: healthy, name: f[0]))
            } else {
                cases.append(DatasetCase(name: f[0], ctPath: ct, labels: .multiLabel(path: resolve(f[2]), organs: organs),
                                         healthy: healthy))
            }
        }
        return DatasetManifest(cases: cases)
    }

    private static func base(_ dir: URL, _ p: String) -> String { dir.appendingPathComponent(p).standardizedFileURL.path }

    /// The manifest as text (`read` gives it back).
    public var text: String {
        var lines = ["# name ct label organs status"]
        for c in cases {
            switch c.labels {
            case let .multiLabel(path, organs):
                lines.append([c.name, c.ctPath, path, organs.text, c.healthy ? "healthy" : "tumor"].joined(separator: " "))
            case .perOrgan:
                let dir = URL(fileURLWithPath: c.ctPath).deletingLastPathComponent().path
                lines.append([c.name, dir, "-", "-", c.healthy ? "healthy" : "tumor"].joined(separator: " "))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The AbdomenAtlas folder layout: `CASE/ct.nii.gz` and `CASE/segmentations/<organ>.nii.gz`
/// (liver, pancreas, spleen; kidneys as `kidney_left`/`kidney_right`).
public enum AbdomenAtlas {
    static let organFiles: [(Organ, String)] = [
        (.liver, "liver"), (.pancreas, "pancreas"), (.spleen, "spleen"),
        (.kidney, "kidney_right"), (.kidney, "kidney_left"), (.kidney, "kidney"),
    ]

    /// A case from a folder; organs whose file is absent are left out. Throws if `ct.nii.gz` is missing.
    public static func `case`(at folder: String, healthy: Bool, name: String? = nil) throws -> DatasetCase {
        let dir = URL(fileURLWithPath: folder)
        let ct = dir.appendingPathComponent("ct.nii.gz").path
        guard FileManager.default.fileExists(atPath: ct) else {
            throw ImagingError(.missingFile, path: ct, "AbdomenAtlas case folder has no ct.nii.gz")
        }
        var files: [Organ: [String]] = [:]
        for (organ, file) in organFiles {
            let p = dir.appendingPathComponent("segmentations/\(file).nii.gz").path
            guard FileManager.default.fileExists(atPath: p) else { continue }
            files[organ, default: []].append(p)
        }
        return DatasetCase(name: name ?? dir.lastPathComponent, ctPath: ct, labels: .perOrgan(files), healthy: healthy)
    }

    /// Every case folder under `root` (folders that hold a ct.nii.gz), sorted by name.
    public static func scan(_ root: String, healthy: Bool = true) throws -> [DatasetCase] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else {
            throw ImagingError(.missingFile, path: root, "not a readable folder")
        }
        return try names.sorted().compactMap { n in
            let d = URL(fileURLWithPath: root).appendingPathComponent(n).path
            guard FileManager.default.fileExists(atPath: d + "/ct.nii.gz") else { return nil }
            return try self.case(at: d, healthy: healthy)
        }
    }
}
