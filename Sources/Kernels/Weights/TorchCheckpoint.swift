import Foundation

/// A PyTorch checkpoint (`torch.save` zip format): the unpickled object tree plus lazy access
/// to the tensors' storages. Lightning `.ckpt` files and plain `.pt` files are both this format.
public final class TorchCheckpoint {
    public let path: String
    public let root: PickleValue
    public let storages: [String: TorchStorageRef]
    private let archive: ZipArchive
    private let prefix: String

    public convenience init(path: String) throws {
        try self.init(archive: try ZipArchive(path: path))
    }

    public init(archive: ZipArchive) throws {
        self.archive = archive
        self.path = archive.path
        guard let pkl = archive.entries.first(where: { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }) else {
            throw WeightsError(.zip, file: archive.path, "no data.pkl entry: not a PyTorch checkpoint")
        }
        prefix = String(pkl.name.dropLast("data.pkl".count))
        if let order = archive.entry(named: prefix + "byteorder") {
            let r = try archive.byteRange(of: order)
            let s = String(decoding: archive.data[(archive.data.startIndex + r.lowerBound)..<(archive.data.startIndex + r.upperBound)], as: UTF8.self)
            guard s == "little" else {
                throw WeightsError(.unsupported, file: archive.path, "byte order '\(s)' (only little-endian checkpoints are supported)")
            }
        }
        let r = try archive.byteRange(of: pkl)
        let bytes = [UInt8](archive.data[(archive.data.startIndex + r.lowerBound)..<(archive.data.startIndex + r.upperBound)])
        (root, storages) = try Unpickler.load(bytes, file: archive.path)
    }

    /// The tensor a reference describes, as contiguous Float32.
    public func materialize(_ ref: TorchTensorRef) throws -> Tensor {
        let name = prefix + "data/" + ref.storage.key
        guard let e = archive.entry(named: name) else {
            throw WeightsError(.tensor, file: path, "storage '\(ref.storage.key)' has no zip entry '\(name)'")
        }
        let range = try archive.byteRange(of: e)
        let (needed, overflow) = ref.storage.count.multipliedReportingOverflow(by: ref.storage.dtype.byteSize)
        guard !overflow, needed <= range.count else {
            throw WeightsError(.tensor, file: path, "storage '\(ref.storage.key)' declares \(ref.storage.count) \(ref.storage.dtype) elements but its entry holds \(range.count) bytes")
        }
        return archive.data.withUnsafeBytes { all in
            let raw = UnsafeRawBufferPointer(rebasing: all[range])
            return DTypeConversion.tensor(raw, ref.storage.dtype, offset: ref.offset, shape: ref.shape, strides: ref.strides)
        }
    }

    /// The value at a path of string keys from the root (`["state_dict"]`, `["ema"]`).
    public func value(at keyPath: [String]) -> PickleValue? {
        var v = root
        for k in keyPath {
            guard let d = v.asDict, let next = d[k] else { return nil }
            v = next
        }
        return v
    }

    /// Every tensor under `value`, flattened to dotted keys (nested dicts become `a.b.c`).
    /// Non-tensor leaves (numbers, opaque objects) are skipped.
    public func stateDict(of value: PickleValue, keyPrefix: String = "") -> StateDict {
        var sd = StateDict(file: path)
        collect(value, keyPrefix, &sd, depth: 0)
        return sd
    }

    private func collect(_ v: PickleValue, _ key: String, _ sd: inout StateDict, depth: Int) {
        guard depth < 64 else { return } // hostile self-referencing containers
        switch v {
        case .tensor(let ref):
            sd.add(key, StateDict.Entry(dtype: ref.storage.dtype, shape: ref.shape, load: { [self] in try self.materialize(ref) }))
        case .dict(let d):
            for (k, child) in d.stringItems { collect(child, key.isEmpty ? k : key + "." + k, &sd, depth: depth + 1) }
        default:
            break
        }
    }

    /// The model weights of a checkpoint: Lightning's `state_dict`, else the diffusion trainer's
    /// `ema` (the weights used at synthesis time), else `model`, else the root if it is a flat dict.
    public func modelStateDict() throws -> StateDict {
        for key in ["state_dict", "ema", "model"] {
            if let v = value(at: [key]), v.asDict != nil { return stateDict(of: v) }
        }
        if root.asDict != nil {
            let sd = stateDict(of: root)
            if !sd.keys.isEmpty { return sd }
        }
        throw WeightsError(.missingKey, file: path, "no 'state_dict', 'ema' or 'model' dictionary of tensors at the top level")
    }
}
