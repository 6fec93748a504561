import Foundation

/// A restricted unpickler for what `torch.save` emits (protocols 2-5, binary opcodes).
/// It builds plain containers, scalars and tensor references; any other class becomes
/// `.opaque`, so nothing in the file is executed. Every read is bounds-checked and every stack
/// access validated: malformed input throws `WeightsError`, never traps.
public struct Unpickler {
    private let bytes: [UInt8]
    private let file: String
    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    /// The storages referenced so far, by key (tensors sharing a storage share the key).
    public private(set) var storages: [String: TorchStorageRef] = [:]

    public init(bytes: [UInt8], file: String = "") {
        self.bytes = bytes
        self.file = file
    }

    /// Unpickles the whole stream and returns the top-level value.
    public static func load(_ bytes: [UInt8], file: String = "") throws -> (PickleValue, [String: TorchStorageRef]) {
        var u = Unpickler(bytes: bytes, file: file)
        let v = try u.run()
        return (v, u.storages)
    }

    private func fail(_ message: String, at offset: Int? = nil) -> WeightsError {
        WeightsError(.pickle, file: file, "\(message) (at byte \(offset ?? pos) of the pickle)")
    }

    // MARK: reading

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - pos else { throw fail("truncated: need \(n) bytes, \(bytes.count - pos) left") }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    private mutating func byte() throws -> UInt8 { try take(1).first! }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    private mutating func length(_ n: Int) throws -> Int {
        let v = try uint(n)
        guard v <= UInt64(bytes.count - pos) else { throw fail("length \(v) exceeds the \(bytes.count - pos) bytes left") }
        return Int(v)
    }

    private mutating func line() throws -> String {
        guard let nl = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("unterminated text line") }
        defer { pos = nl + 1 }
        return String(decoding: bytes[pos..<nl], as: UTF8.self)
    }

    // MARK: stack

    private mutating func pop() throws -> PickleValue {
        guard let top = stack.popLast() else { throw fail("stack underflow") }
        if let m = marks.last, stack.count < m { throw fail("pop below the last MARK") }
        return top
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no MARK on the stack") }
        guard m <= stack.count else { throw fail("MARK beyond the stack") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private func top() throws -> PickleValue {
        guard let t = stack.last else { throw fail("stack underflow") }
        return t
    }

    private mutating func memoGet(_ i: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw fail("memo key \(i) not defined") }
        return v
    }

    private mutating func memoPut(_ i: Int) throws {
        memo[i] = try top()
    }

    // MARK: the machine

    public mutating func run() throws -> PickleValue {
        while true {
            let opAt = pos
            let op = try byte()
            switch op {
            case 0x80: // PROTO
                let v = try byte()
                guard v >= 2 && v <= 5 else { throw fail("pickle protocol \(v) not supported (need 2-5)", at: opAt) }
            case 0x95: _ = try uint(8) // FRAME: frames are just a read-ahead hint
            case 0x2E: // STOP
                guard stack.count == 1 else { throw fail("STOP with \(stack.count) values on the stack", at: opAt) }
                return stack[0]
            case 0x28: marks.append(stack.count) // MARK
            case 0x7D: stack.append(.dict(PickleDict())) // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList())) // EMPTY_LIST
            case 0x29: stack.append(.tuple([])) // EMPTY_TUPLE
            case 0x8F: stack.append(.list(PickleList())) // EMPTY_SET (as a list)
            case 0x4E: stack.append(.none) // NONE
            case 0x88: stack.append(.bool(true)) // NEWTRUE
            case 0x89: stack.append(.bool(false)) // NEWFALSE
            case 0x4A: stack.append(.int(Int64(Int32(truncatingIfNeeded: try uint(4))))) // BININT
            case 0x4B: stack.append(.int(Int64(try byte()))) // BININT1
            case 0x4D: stack.append(.int(Int64(try uint(2)))) // BININT2
            case 0x8A: stack.append(try long(try length(1))) // LONG1
            case 0x8B: // LONG4
                let n = try uint(4)
                guard n <= UInt64(bytes.count - pos) else { throw fail("LONG4 length \(n) past the end", at: opAt) }
                stack.append(try long(Int(n)))
            case 0x47: // BINFLOAT (big-endian)
                var v: UInt64 = 0
                for b in try take(8) { v = v << 8 | UInt64(b) }
                stack.append(.float(Double(bitPattern: v)))
            case 0x58: stack.append(.string(String(decoding: try take(try length(4)), as: UTF8.self))) // BINUNICODE
            case 0x8C: stack.append(.string(String(decoding: try take(try length(1)), as: UTF8.self))) // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(String(decoding: try take(try length(8)), as: UTF8.self))) // BINUNICODE8
            case 0x54: stack.append(.string(String(decoding: try take(try length(4)), as: UTF8.self))) // BINSTRING
            case 0x55: stack.append(.string(String(decoding: try take(try length(1)), as: UTF8.self))) // SHORT_BINSTRING
            case 0x42: stack.append(.bytes(Array(try take(try length(4))))) // BINBYTES
            case 0x43: stack.append(.bytes(Array(try take(try length(1))))) // SHORT_BINBYTES
            case 0x8E: stack.append(.bytes(Array(try take(try length(8))))) // BINBYTES8
            case 0x74: stack.append(.tuple(try popMark())) // TUPLE
            case 0x85: let a = try pop(); stack.append(.tuple([a])) // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b])) // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c])) // TUPLE3
            case 0x6C: stack.append(.list(PickleList(try popMark()))) // LIST
            case 0x64: // DICT
                let items = try popMark()
                stack.append(.dict(try makeDict(items, at: opAt)))
            case 0x91: stack.append(.tuple(try popMark())) // FROZENSET
            case 0x61: // APPEND
                let v = try pop()
                try append([v], to: try top(), at: opAt)
            case 0x65, 0x90: // APPENDS, ADDITEMS
                let items = try popMark()
                try append(items, to: try top(), at: opAt)
            case 0x73: // SETITEM
                let v = try pop(), k = try pop()
                try setItems([k, v], into: try top(), at: opAt)
            case 0x75: // SETITEMS
                let items = try popMark()
                try setItems(items, into: try top(), at: opAt)
            case 0x71: try memoPut(Int(try byte())) // BINPUT
            case 0x72: try memoPut(Int(try uint(4))) // LONG_BINPUT
            case 0x94: try memoPut(memo.count) // MEMOIZE
            case 0x68: stack.append(try memoGet(Int(try byte()))) // BINGET
            case 0x6A: stack.append(try memoGet(Int(try uint(4)))) // LONG_BINGET
            case 0x30: _ = try pop() // POP
            case 0x31: _ = try popMark() // POP_MARK
            case 0x32: stack.append(try top()) // DUP
            case 0x63: // GLOBAL
                let module = try line(), name = try line()
                stack.append(.global(module: module, name: name))
            case 0x93: // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard let m = module.asString, let n = name.asString else { throw fail("STACK_GLOBAL needs two strings", at: opAt) }
                stack.append(.global(module: m, name: n))
            case 0x52: // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args, at: opAt))
            case 0x81: // NEWOBJ
                let args = try pop(), cls = try pop()
                stack.append(try newObject(cls, args))
            case 0x92: // NEWOBJ_EX
                _ = try pop()
                let args = try pop(), cls = try pop()
                stack.append(try newObject(cls, args))
            case 0x62: // BUILD: state is applied by __setstate__ in Python; we keep the object as built.
                _ = try pop()
                _ = try top()
            case 0x51: // BINPERSID
                let pid = try pop()
                stack.append(try persistentLoad(pid, at: opAt))
            default:
                throw fail(String(format: "unsupported opcode 0x%02X", op), at: opAt)
            }
        }
    }

    private mutating func long(_ n: Int) throws -> PickleValue {
        let raw = Array(try take(n))
        if raw.isEmpty { return .int(0) }
        if raw.count > 8 { return .bigInt(raw) }
        var v: UInt64 = 0
        for (i, b) in raw.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        if raw.count < 8, raw.last! & 0x80 != 0 { v |= ~0 << (8 * UInt64(raw.count)) } // sign-extend
        return .int(Int64(bitPattern: v))
    }

    private func makeDict(_ items: [PickleValue], at offset: Int) throws -> PickleDict {
        guard items.count % 2 == 0 else { throw fail("odd number of items (\(items.count)) for a dict", at: offset) }
        let d = PickleDict()
        for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
        return d
    }

    private func append(_ items: [PickleValue], to target: PickleValue, at offset: Int) throws {
        switch target {
        case .list(let l): l.items.append(contentsOf: items)
        case .opaque: break // e.g. a set-like or custom container: contents are dropped
        default: throw fail("APPEND(S) onto a \(target.typeName)", at: offset)
        }
    }

    private func setItems(_ items: [PickleValue], into target: PickleValue, at offset: Int) throws {
        guard items.count % 2 == 0 else { throw fail("odd number of items (\(items.count)) for SETITEMS", at: offset) }
        switch target {
        case .dict(let d): for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
        case .opaque: break // e.g. collections.defaultdict, OmegaConf containers
        default: throw fail("SETITEM(S) onto a \(target.typeName)", at: offset)
        }
    }

    private func newObject(_ cls: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let m, let n) = cls else { return .opaque("instance of \(cls.typeName)") }
        switch (m, n) {
        case ("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict"): return .dict(PickleDict())
        case ("builtins", "list"), ("__builtin__", "list"), ("builtins", "set"), ("__builtin__", "set"): return .list(PickleList())
        default: return .opaque("\(m).\(n)")
        }
    }

    /// REDUCE: only a fixed set of callables is interpreted; every other call gives an opaque value.
    private mutating func reduce(_ callable: PickleValue, _ args: PickleValue, at offset: Int) throws -> PickleValue {
        guard case .global(let m, let n) = callable else { return .opaque("result of calling a \(callable.typeName)") }
        let a = args.asTuple ?? []
        switch (m, n) {
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            guard a.count >= 4, case .storage(let s) = a[0], let off = a[1].asInt,
                  let size = a[2].asTuple, let stride = a[3].asTuple else {
                throw fail("\(n) expects (storage, offset, size, stride, ...)", at: offset)
            }
            let shape = try size.map { v -> Int in
                guard let i = v.asInt, i >= 0, i < Int64(Int32.max) else { throw fail("bad tensor dimension \(v.typeName)", at: offset) }
                return Int(i)
            }
            let strides = try stride.map { v -> Int in
                guard let i = v.asInt, i >= 0, i < Int64(Int32.max) * 8 else { throw fail("bad tensor stride", at: offset) }
                return Int(i)
            }
            guard shape.count == strides.count, shape.count <= 8 else {
                throw fail("tensor of rank \(shape.count) with \(strides.count) strides", at: offset)
            }
            guard off >= 0, off <= Int64(s.count) else { throw fail("storage offset \(off) outside storage of \(s.count) elements", at: offset) }
            // The largest element index must lie inside the storage.
            var last = Int(off)
            var empty = false
            for (d, st) in zip(shape, strides) {
                if d == 0 { empty = true }
                let (mul, o1) = (d - 1).multipliedReportingOverflow(by: st)
                let (sum, o2) = last.addingReportingOverflow(max(mul, 0))
                guard !o1, !o2 else { throw fail("tensor extent overflows", at: offset) }
                last = sum
            }
            guard empty || last < s.count else {
                throw fail("tensor \(shape) with strides \(strides) at offset \(off) reaches element \(last) of a storage of \(s.count)", at: offset)
            }
            return .tensor(TorchTensorRef(storage: s, offset: Int(off), shape: shape, strides: strides))
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            guard let first = a.first, case .tensor = first else { throw fail("\(n) expects a tensor", at: offset) }
            return first
        case ("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict"):
            let d = PickleDict()
            if let pairs = a.first?.asTuple {
                for p in pairs { if let kv = p.asTuple, kv.count == 2 { d.set(kv[0], kv[1]) } }
            }
            return .dict(d)
        case ("builtins", "list"), ("__builtin__", "list"):
            return .list(PickleList(a.first?.asTuple ?? []))
        case ("builtins", "tuple"), ("__builtin__", "tuple"):
            return .tuple(a.first?.asTuple ?? [])
        default:
            return .opaque("\(m).\(n)")
        }
    }

    /// BINPERSID: PyTorch's `('storage', storage_type, key, location, numel)`.
    private mutating func persistentLoad(_ pid: PickleValue, at offset: Int) throws -> PickleValue {
        guard let t = pid.asTuple, t.count >= 5, t[0].asString == "storage" else {
            throw fail("unknown persistent id (\(pid.typeName))", at: offset)
        }
        guard case .global(_, let typeName) = t[1] else { throw fail("storage type is not a class", at: offset) }
        guard let dtype = WeightDType(torchStorage: typeName) else {
            throw WeightsError(.unsupported, file: file, "storage type \(typeName) is not supported")
        }
        guard let key = t[2].asString, let n = t[4].asInt, n >= 0, n < Int64(Int.max / 16) else {
            throw fail("malformed storage persistent id", at: offset)
        }
        if let existing = storages[key] {
            guard existing.dtype == dtype, existing.count == Int(n) else {
                throw fail("storage '\(key)' declared twice with different types or sizes", at: offset)
            }
            return .storage(existing)
        }
        let s = TorchStorageRef(key: key, dtype: dtype, count: Int(n))
        storages[key] = s
        return .storage(s)
    }
}
