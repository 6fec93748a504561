/// A value built by the restricted unpickler: plain Python containers and scalars, tensors
/// (as references into the checkpoint's storages) and opaque stand-ins for every other class.
/// Nothing pickled is ever executed.
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer that does not fit in 64 bits (kept as little-endian two's complement bytes).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case list(PickleList)
    case tuple([PickleValue])
    case dict(PickleDict)
    case global(module: String, name: String)
    case storage(TorchStorageRef)
    case tensor(TorchTensorRef)
    /// An instance of a class the reader does not build (OmegaConf configs, optimizers, ...).
    case opaque(String)

    public var asInt: Int64? { if case .int(let v) = self { return v }; if case .bool(let b) = self { return b ? 1 : 0 }; return nil }
    public var asString: String? { if case .string(let s) = self { return s }; return nil }
    public var asDict: PickleDict? { if case .dict(let d) = self { return d }; return nil }
    public var asTensor: TorchTensorRef? { if case .tensor(let t) = self { return t }; return nil }
    public var asTuple: [PickleValue]? {
        if case .tuple(let t) = self { return t }
        if case .list(let l) = self { return l.items }
        return nil
    }

    /// A short type description for `inspect` output and error messages.
    public var typeName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .global(let m, let n): "global \(m).\(n)"
        case .storage: "storage"
        case .tensor: "tensor"
        case .opaque(let c): "opaque \(c)"
        }
    }
}

/// A Python list: a reference type, because the pickle memo shares it while APPENDS fill it.
public final class PickleList {
    public var items: [PickleValue]
    public init(_ items: [PickleValue] = []) { self.items = items }
}

/// A Python dict (or OrderedDict): keys kept in insertion order.
public final class PickleDict {
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var stringIndex: [String: Int] = [:]

    public init() {}

    public var count: Int { keys.count }

    public func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let s) = key {
            if let i = stringIndex[s] { values[i] = value; return }
            stringIndex[s] = keys.count
        }
        keys.append(key)
        values.append(value)
    }

    public subscript(_ key: String) -> PickleValue? {
        stringIndex[key].map { values[$0] }
    }

    /// The (key, value) pairs whose key is a string, in order.
    public var stringItems: [(String, PickleValue)] {
        zip(keys, values).compactMap { k, v in k.asString.map { ($0, v) } }
    }
}

/// Element types of PyTorch storages and safetensors tensors.
public enum WeightDType: String, Sendable, CaseIterable {
    case float32 = "F32", float16 = "F16", bfloat16 = "BF16", float64 = "F64"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// The PyTorch legacy storage class name (`torch.FloatStorage` ...) for this type.
    init?(torchStorage name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }
}

/// A storage named by a pickle persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
public struct TorchStorageRef {
    public let key: String
    public let dtype: WeightDType
    public let count: Int
}

/// A tensor view onto a storage, as `torch._utils._rebuild_tensor_v2` describes it.
public struct TorchTensorRef {
    public let storage: TorchStorageRef
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
}
