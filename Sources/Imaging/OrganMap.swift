/// Organs TumorStream synthesizes tumors into, plus the others the phantom draws.
public enum Organ: String, CaseIterable, Sendable, Codable {
    case liver, pancreas, kidney, spleen

    /// Organs that get tumors (reference: liver, pancreas, kidney).
    public static let tumorOrgans: [Organ] = [.liver, .pancreas, .kidney]
}

/// Which label ids mean which organ in one dataset's label maps. Configurable per dataset.
public struct OrganMap: Equatable, Sendable {
    public var ids: [Organ: [UInt8]]

    public init(_ ids: [Organ: [UInt8]]) { self.ids = ids }

    /// TotalSegmentator (v2 "total" task): spleen 1, kidney_right 2, kidney_left 3, liver 5, pancreas 7.
    public static let totalSegmentator = OrganMap([.spleen: [1], .kidney: [2, 3], .liver: [5], .pancreas: [7]])

    /// Per-organ binary files (AbdomenAtlas `segmentations/liver.nii.gz` ...): each file is 0/1.
    public static let binary = OrganMap([.spleen: [1], .kidney: [1], .liver: [1], .pancreas: [1]])

    /// All ids of an organ (kidney has two in TotalSegmentator).
    public func allIDs(of organ: Organ) -> [UInt8] { ids[organ] ?? [] }

    /// The first id of an organ (the only one for single-id organs).
    public func id(of organ: Organ) -> UInt8? { ids[organ]?.first }

    /// The organ an id belongs to, if any.
    public func organ(of id: UInt8) -> Organ? { ids.first { $0.value.contains(id) }?.key }

    /// Parses "liver=5,pancreas=7,kidney=2+3,spleen=1".
    public static func parse(_ text: String) throws -> OrganMap {
        var out: [Organ: [UInt8]] = [:]
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let organ = Organ(rawValue: kv[0].lowercased()) else {
                throw ImagingError(.badManifest, path: "organ map", "cannot read \"\(part)\" (expected organ=id, organs: "
                                   + Organ.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            let ids = kv[1].split(separator: "+").compactMap { UInt8($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty, ids.count == kv[1].split(separator: "+").count else {
                throw ImagingError(.badManifest, path: "organ map", "bad ids \"\(kv[1])\" for \(organ.rawValue) (expected 0...255, joined by +)")
            }
            out[organ] = ids
        }
        return OrganMap(out)
    }

    public var text: String {
        Organ.allCases.compactMap { o in ids[o].map { "\(o.rawValue)=" + $0.map(String.init).joined(separator: "+") } }
            .joined(separator: ",")
    }
}

import Foundation
