import Foundation

/// The central directory of a zip file (PyTorch's `torch.save` container), read without extracting.
/// PyTorch writes every entry STORED (uncompressed, 64-byte aligned); compressed entries are
/// rejected with a clear error. Zip64 records are understood. Every offset is bounds-checked.
public struct ZipArchive {
    public struct Entry {
        public let name: String
        public let method: UInt16
        public let compressedSize: Int
        public let size: Int
        public let localHeaderOffset: Int
    }

    public let path: String
    public let data: Data
    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]

    public init(path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw WeightsError(.io, file: path, "\(error.localizedDescription)")
        }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String = "") throws {
        self.path = path
        self.data = data
        try readCentralDirectory()
    }

    public func entry(named name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// The bytes of a STORED entry, as a range of `data`.
    public func byteRange(of entry: Entry) throws -> Range<Int> {
        guard entry.method == 0 else {
            throw WeightsError(.unsupported, file: path,
                               "zip entry '\(entry.name)' is compressed (method \(entry.method)); PyTorch checkpoints store entries uncompressed")
        }
        let h = entry.localHeaderOffset
        guard try u32(h) == 0x0403_4b50 else {
            throw WeightsError(.zip, file: path, "no local header signature for '\(entry.name)' at offset \(h)")
        }
        let nameLength = Int(try u16(h + 26)), extraLength = Int(try u16(h + 28))
        let start = h + 30 + nameLength + extraLength
        let (end, overflow) = start.addingReportingOverflow(entry.size)
        guard !overflow, end <= data.count else {
            throw WeightsError(.zip, file: path, "entry '\(entry.name)' (\(entry.size) bytes at \(start)) runs past the end of the file (\(data.count) bytes)")
        }
        return start..<end
    }

    public func bytes(of name: String) throws -> Data {
        guard let e = entry(named: name) else { throw WeightsError(.zip, file: path, "no entry '\(name)'") }
        let r = try byteRange(of: e)
        return data.subdata(in: (data.startIndex + r.lowerBound)..<(data.startIndex + r.upperBound))
    }

    // MARK: - parsing

    private func u16(_ o: Int) throws -> UInt16 {
        guard o >= 0, o <= data.count - 2 else { throw WeightsError(.zip, file: path, "read of 2 bytes at \(o) past the end (\(data.count) bytes)") }
        return UInt16(data[data.startIndex + o]) | UInt16(data[data.startIndex + o + 1]) << 8
    }

    private func u32(_ o: Int) throws -> UInt32 {
        guard o >= 0, o <= data.count - 4 else { throw WeightsError(.zip, file: path, "read of 4 bytes at \(o) past the end (\(data.count) bytes)") }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(data[data.startIndex + o + i]) << (8 * UInt32(i)) }
        return v
    }

    private func u64(_ o: Int) throws -> UInt64 {
        guard o >= 0, o <= data.count - 8 else { throw WeightsError(.zip, file: path, "read of 8 bytes at \(o) past the end (\(data.count) bytes)") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(data[data.startIndex + o + i]) << (8 * UInt64(i)) }
        return v
    }

    private func int(_ v: UInt64, _ what: String) throws -> Int {
        guard v <= UInt64(Int.max / 2) else { throw WeightsError(.zip, file: path, "\(what) \(v) is out of range") }
        return Int(v)
    }

    private mutating func readCentralDirectory() throws {
        guard data.count >= 22 else {
            throw WeightsError(.zip, file: path, "file is \(data.count) bytes, too short for a zip archive")
        }
        if data.first == 0x80 {
            throw WeightsError(.unsupported, file: path, "legacy (pre-1.6, non-zip) torch.save format; re-save it with a current PyTorch")
        }
        // End of central directory: the last signature within the final 64 KiB + 22 bytes.
        var eocd = -1
        var o = data.count - 22
        let lowest = max(0, data.count - 22 - 65_535)
        while o >= lowest {
            if try u32(o) == 0x0605_4b50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw WeightsError(.zip, file: path, "no end-of-central-directory record (not a zip file, or truncated)") }
        var count = Int(try u16(eocd + 10))
        var cdSize = Int(try u32(eocd + 12))
        var cdOffset = Int(try u32(eocd + 16))
        // Zip64 locator sits just before the EOCD.
        if eocd >= 20, try u32(eocd - 20) == 0x0706_4b50 {
            let z64 = try int(try u64(eocd - 20 + 8), "zip64 EOCD offset")
            guard try u32(z64) == 0x0606_4b50 else { throw WeightsError(.zip, file: path, "bad zip64 end-of-central-directory record at \(z64)") }
            count = try int(try u64(z64 + 32), "entry count")
            cdSize = try int(try u64(z64 + 40), "central directory size")
            cdOffset = try int(try u64(z64 + 48), "central directory offset")
        }
        guard cdOffset <= data.count, cdSize <= data.count - cdOffset else {
            throw WeightsError(.zip, file: path, "central directory (\(cdSize) bytes at \(cdOffset)) lies outside the file (\(data.count) bytes)")
        }
        guard count <= cdSize / 46 + 1 else { throw WeightsError(.zip, file: path, "entry count \(count) does not fit the central directory") }
        var p = cdOffset
        entries.reserveCapacity(count)
        for i in 0..<count {
            guard try u32(p) == 0x0201_4b50 else { throw WeightsError(.zip, file: path, "central directory entry \(i) has a bad signature at offset \(p)") }
            let method = try u16(p + 10)
            var csize = UInt64(try u32(p + 20)), usize = UInt64(try u32(p + 24))
            let nameLength = Int(try u16(p + 28)), extraLength = Int(try u16(p + 30)), commentLength = Int(try u16(p + 32))
            var local = UInt64(try u32(p + 42))
            let nameStart = p + 46
            guard nameStart + nameLength <= data.count else { throw WeightsError(.zip, file: path, "entry \(i) name runs past the end") }
            let name = String(decoding: data[(data.startIndex + nameStart)..<(data.startIndex + nameStart + nameLength)], as: UTF8.self)
            // Zip64 extended information: only the fields whose 32-bit value is 0xFFFFFFFF are present.
            var e = nameStart + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let tag = try u16(e), size = Int(try u16(e + 2))
                if tag == 0x0001 {
                    var f = e + 4
                    if usize == 0xFFFF_FFFF { usize = try u64(f); f += 8 }
                    if csize == 0xFFFF_FFFF { csize = try u64(f); f += 8 }
                    if local == 0xFFFF_FFFF { local = try u64(f); f += 8 }
                }
                e += 4 + size
            }
            let entry = Entry(name: name, method: method, compressedSize: try int(csize, "compressed size"),
                              size: try int(usize, "size"), localHeaderOffset: try int(local, "local header offset"))
            index[name] = entries.count
            entries.append(entry)
            p = extraEnd + commentLength
        }
    }
}
