import ArgumentParser
import Foundation
import Imaging

extension TumorD {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe a NIfTI CT (and optionally its label map): grid, geometry, HU range, organ volumes.")

        @Argument(help: "A NIfTI file (.nii or .nii.gz).")
        var file: String

        @Option(help: "A label map on the same grid: prints volume (mL) and mean HU per label id.")
        var label: String?

        @Option(help: "Organ ids used to name labels, e.g. liver=5,pancreas=7,kidney=2+3,spleen=1.")
        var organs: String = OrganMap.totalSegmentator.text

        func validate() throws {
            _ = try OrganMap.parse(organs)
        }

        func run() throws {
            let header = try NIfTI.readHeader(file)
            let ct = try NIfTI.readVolume(file)
            print(InspectReport.header(header, volume: ct))
            if let label {
                let labels = try NIfTI.readLabels(label)
                try ct.checkSameGrid(as: labels, ctPath: file, labelPath: label)
                print(InspectReport.labels(LabelStatistics.compute(ct: ct, labels: labels),
                                           path: label, organs: try OrganMap.parse(organs)))
            }
        }
    }
}

/// Text of `tumord inspect`.
enum InspectReport {
    static func header(_ h: NIfTIHeader, volume v: Volume) -> String {
        let values = v.voxels.withUnsafeBufferPointer { b -> (Float, Float, Double) in
            var lo = Float.infinity, hi = -Float.infinity, sum = 0.0
            for x in b { lo = min(lo, x); hi = max(hi, x); sum += Double(x) }
            return (lo, hi, sum / Double(max(1, b.count)))
        }
        let f = { (x: Double) in String(format: "%.4g", x) }
        var lines = [
            "file         \(h.path)",
            "format       NIfTI-\(h.version)",
            "dimensions   " + h.dimensions.map(String.init).joined(separator: " x "),
            "spacing      " + h.spacing.map { String(format: "%.4g", $0) }.joined(separator: " x ") + " mm",
            "orientation  \(h.orientation)",
            "datatype     \(h.datatypeName)",
            "scaling      " + (h.hasScaling ? "value = \(f(h.sclSlope)) * stored + \(f(h.sclInter))"
                                             : "none (scl_slope \(f(h.sclSlope)), scl_inter \(f(h.sclInter)))"),
            "geometry     from the " + (h.sformCode > 0 ? "sform" : "qform")
                + " (sform_code \(h.sformCode), qform_code \(h.qformCode))",
        ]
        for (i, row) in h.affine.rows.prefix(3).enumerated() {
            lines.append((i == 0 ? "affine       " : "             ") + row.map { String(format: "%10.4f", $0) }.joined(separator: " "))
        }
        lines.append(String(format: "HU range     %.1f .. %.1f (mean %.1f)", values.0, values.1, values.2))
        return lines.joined(separator: "\n")
    }

    static let names: [UInt8: String] = [1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder",
                                         5: "liver", 6: "stomach", 7: "pancreas"]

    static func labels(_ stats: [LabelStatistics], path: String, organs: OrganMap) -> String {
        var lines = ["labels       \(path)",
                     "  id     voxels   volume_mL   mean_HU    std_HU  name"]
        for s in stats {
            let name = s.id == 0 ? "background"
                : organs.organ(of: s.id).map { o in organs == .totalSegmentator ? (names[s.id] ?? o.rawValue) : o.rawValue } ?? ""
            lines.append(String(format: "%4d %10d %11.1f %9.1f %9.1f  ", Int(s.id), s.voxels, s.millilitres, s.meanHU, s.stdHU) + name)
        }
        return lines.joined(separator: "\n")
    }
}
