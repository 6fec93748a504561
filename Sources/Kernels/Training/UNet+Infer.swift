/// Reading a MONAI UNet's hyper-parameters off its state dict's names and shapes, so published
/// checkpoints load without a config (DESIGN.md: "inferred from tensor shapes").
extension UNetConfig {
    /// Channels, residual units, input and output channels from the parameter shapes. Strides
    /// are not visible in the shapes; they are taken as 2 at every level (the reference's).
    public static func infer(fromShapes shapes: [String: [Int]]) throws -> UNetConfig {
        let resUnits = (0..<8).filter { shapes["model.0.conv.unit\($0).conv.weight"] != nil }.count
        func downWeight(_ prefix: String) -> [Int]? {
            shapes[prefix + (resUnits > 0 ? "conv.unit0.conv.weight" : "conv.weight")]
        }
        guard let first = downWeight("model.0."), first.count == 5 else {
            throw UNetLoadError(key: "model.0.conv.unit0.conv.weight", problem: "is missing: not a MONAI UNet state dict")
        }
        var channels = [first[0]]
        var prefix = "model.1.submodule."
        while true {
            if let w = downWeight(prefix + "0.") { channels.append(w[0]); prefix += "1.submodule."; continue }
            if let w = downWeight(prefix) { channels.append(w[0]); break }
            throw UNetLoadError(key: prefix + "…", problem: "ends the UNet levels without a bottom layer")
        }
        let upKey = resUnits > 0 ? "model.2.0.conv.weight" : "model.2.conv.weight"
        guard let up = shapes[upKey], up.count == 5 else {
            throw UNetLoadError(key: upKey, problem: "is missing: cannot tell the number of output classes")
        }
        return UNetConfig(inChannels: first[1], outChannels: up[1], channels: channels,
                          strides: Array(repeating: 2, count: channels.count - 1), numResUnits: resUnits)
    }
}
