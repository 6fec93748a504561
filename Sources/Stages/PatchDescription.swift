import Wire

/// One human-readable line per patch (`tumord tap`, logs).
public enum PatchDescription {
    public static func line(_ p: PatchMessage) -> String {
        var s = "patch \(p.patchID) case=\(p.sourceCase.isEmpty ? "-" : p.sourceCase) seed=\(p.seed) organ=\(p.organ)"
        s += " synthesize=\(p.synthesize) tumor=\(p.tumorType)"
        if !p.patchOrigin.isEmpty { s += " origin=\(p.patchOrigin.map(String.init).joined(separator: ","))" }
        let payloads = p.payloads.map { "\($0.name):\($0.data.dtype)\($0.data.shape)" }.joined(separator: " ")
        s += " [\(payloads)]"
        if !p.provenance.isEmpty {
            s += " via " + p.provenance.map { "\($0.stage)/\($0.replica) \(String(Int(($0.seconds * 1000).rounded())))ms" }
                .joined(separator: ", ")
        }
        return s
    }
}
