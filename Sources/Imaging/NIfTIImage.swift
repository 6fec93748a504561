import CNIfTI
import Foundation
import Kernels

/// Voxel datatypes TumorStream reads (the NIfTI DT_* codes).
public enum NIfTIDatatype: Int32, CaseIterable, Sendable {
    case uint8 = 2, int16 = 4, int32 = 8, float32 = 16, float64 = 64, int8 = 256, uint16 = 512

    public var name: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .int16: "int16"
        case .uint16: "uint16"
        case .int32: "int32"
        case .float32: "float32"
        case .float64: "float64"
        }
    }

    public var bytes: Int {
        switch self {
        case .uint8, .int8: 1
        case .int16, .uint16: 2
        case .int32, .float32: 4
        case .float64: 8
        }
    }

    public var isFloat: Bool { self == .float32 || self == .float64 }
}

/// What the header says, for `tumord inspect` and for validation.
public struct NIfTIHeader: Sendable {
    public var path: String
    /// 1 or 2 (NIfTI-1 / NIfTI-2).
    public var version: Int
    /// dim[1...] up to ndim (e.g. [122, 101, 112]).
    public var dimensions: [Int]
    public var datatypeCode: Int32
    public var datatype: NIfTIDatatype?
    public var datatypeName: String
    public var pixdim: [Double]
    public var sclSlope: Double
    public var sclInter: Double
    public var qformCode: Int
    public var sformCode: Int
    /// World geometry: the sform when sform_code > 0, else the qform.
    public var affine: Affine

    /// Whether scl_slope/scl_inter apply (slope ≠ 0 and finite, and not the identity).
    public var hasScaling: Bool { sclSlope != 0 && sclSlope.isFinite && !(sclSlope == 1 && sclInter == 0) }
    public var spacing: [Double] { affine.spacing }
    public var orientation: String { affine.orientationCode }
}

/// Owns one libnifti `nifti_image *` (the nifti2 API: reads NIfTI-1 and NIfTI-2) and frees it.
final class NIfTIImage {
    let handle: UnsafeMutablePointer<nifti_image>  // nifti_image* (nifti2_io.h)
    let path: String
    /// 1 or 2, from the header size field.
    let version: Int

    private init(owning handle: UnsafeMutablePointer<nifti_image>, path: String, version: Int) {
        self.handle = handle
        self.path = path
        self.version = version
    }

    deinit { nifti_image_free(handle) }

    func withUnsafeHandle<R>(_ body: (UnsafeMutablePointer<nifti_image>) throws -> R) rethrows -> R {
        try body(handle)
    }

    /// Largest 3D volume accepted (2^31 voxels, 8 GiB as Float32): a corrupt header cannot make
    /// the reader allocate without bound.
    static let maxVoxels = 1 << 31

    /// libnifti prints diagnostics to stderr unless told otherwise; TumorStream reports its own errors.
    static let quietLibrary: Void = { nifti_set_debug_level(0) }()

    /// Reads and validates the header only (no voxel data).
    static func openHeader(_ path: String) throws -> NIfTIImage {
        _ = quietLibrary
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ImagingError(.missingFile, path: path, "no such file")
        }
        guard !isDir.boolValue else { throw ImagingError(.notNIfTI, path: path, "is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ImagingError(.missingFile, path: path, "file is not readable")
        }
        // libnifti looks for sibling files when the name has no NIfTI extension; only accept
        // complete single-file names so the file we checked is the file it opens.
        let lower = path.lowercased()
        guard lower.hasSuffix(".nii") || lower.hasSuffix(".nii.gz") else {
            throw ImagingError(.notNIfTI, path: path, "file name must end in .nii or .nii.gz")
        }
        // Probe the first bytes ourselves: libnifti reads garbage headers without much checking.
        let version = try probeHeaderBytes(path)
        guard let nim = nifti_image_read(path, 0) else {
            throw ImagingError(.notNIfTI, path: path, "libnifti could not read a NIfTI header")
        }
        return NIfTIImage(owning: nim, path: path, version: version)
    }

    /// Checks sizeof_hdr (348 for NIfTI-1, 540 for NIfTI-2, either byte order) after gunzip and
    /// returns the version (libnifti 3.0's `nifti_type` says NIfTI-1 for any `.nii` name).
    private static func probeHeaderBytes(_ path: String) throws -> Int {
        guard let fh = FileHandle(forReadingAtPath: path) else {
            throw ImagingError(.missingFile, path: path, "cannot open file")
        }
        defer { try? fh.close() }
        let head = (try? fh.read(upToCount: 4)) ?? Data()
        guard head.count == 4 else { throw ImagingError(.notNIfTI, path: path, "file is shorter than a NIfTI header") }
        var first4: [UInt8] = Array(head)
        if first4[0] == 0x1f && first4[1] == 0x8b {
            // gzip: read the first 4 decompressed bytes through libnifti's znz layer (zlib).
            var zf: znzFile? = znzopen(path, "rb", 1)
            guard zf != nil else { throw ImagingError(.notNIfTI, path: path, "cannot open gzip stream") }
            defer { Xznzclose(&zf) }
            var buf = [UInt8](repeating: 0, count: 4)
            let n = buf.withUnsafeMutableBytes { znzread($0.baseAddress, 1, 4, zf) }
            guard n == 4 else { throw ImagingError(.truncated, path: path, "gzip stream ends before the NIfTI header") }
            first4 = buf
        }
        let le = Int32(first4[0]) | Int32(first4[1]) << 8 | Int32(first4[2]) << 16 | Int32(first4[3]) << 24
        let be = Int32(first4[3]) | Int32(first4[2]) << 8 | Int32(first4[1]) << 16 | Int32(first4[0]) << 24
        guard [348, 540].contains(le) || [348, 540].contains(be) else {
            throw ImagingError(.notNIfTI, path: path, "header size field is \(le), expected 348 (NIfTI-1) or 540 (NIfTI-2)")
        }
        return le == 540 || be == 540 ? 2 : 1
    }

    var header: NIfTIHeader {
        let n = handle.pointee
        let ndim = max(1, min(7, Int(n.ndim)))
        let dims = withUnsafeBytes(of: n.dim) { raw in Array(raw.bindMemory(to: Int64.self)) }
        let pix = withUnsafeBytes(of: n.pixdim) { raw in Array(raw.bindMemory(to: Double.self)) }
        let dt = NIfTIDatatype(rawValue: n.datatype)
        let dtName = dt?.name ?? (nifti_datatype_to_string(n.datatype).map { String(cString: $0) } ?? "code \(n.datatype)")
        let mat = n.sform_code > 0 ? n.sto_xyz : n.qto_xyz
        let flat = withUnsafeBytes(of: mat.m) { raw in Array(raw.bindMemory(to: Double.self)) }
        return NIfTIHeader(path: path, version: version,
                           dimensions: (1...ndim).map { Int(dims[$0]) },
                           datatypeCode: n.datatype, datatype: dt, datatypeName: dtName,
                           pixdim: (1...ndim).map { pix[$0] },
                           sclSlope: n.scl_slope, sclInter: n.scl_inter,
                           qformCode: Int(n.qform_code), sformCode: Int(n.sform_code),
                           affine: Affine(rowMajor: flat))
    }

    /// Validates what TumorStream needs: a supported datatype, one 3D volume, a usable affine.
    func validate() throws -> NIfTIHeader {
        let h = header
        guard h.datatype != nil else {
            throw ImagingError(.unsupportedDatatype, path: path,
                               "datatype \(h.datatypeName) (code \(h.datatypeCode)); supported: "
                               + NIfTIDatatype.allCases.map(\.name).joined(separator: ", "))
        }
        let n = handle.pointee
        let dims = withUnsafeBytes(of: n.dim) { raw in Array(raw.bindMemory(to: Int64.self)) }
        guard (1...3).allSatisfy({ dims[$0] >= 1 }) else {
            throw ImagingError(.badGeometry, path: path, "dimensions \(h.dimensions) are not positive")
        }
        let voxels = (1...3).reduce(1.0) { $0 * Double(dims[$1]) }
        guard voxels <= Double(NIfTIImage.maxVoxels) else {
            throw ImagingError(.badGeometry, path: path,
                               "dimensions \(h.dimensions) give \(voxels) voxels, more than the limit of \(NIfTIImage.maxVoxels)")
        }
        let extra = (4...7).map { Int(dims[$0]) }.filter { $0 > 1 }
        if Int(n.ndim) > 3, !extra.isEmpty {
            throw ImagingError(.multipleVolumes, path: path,
                               "dimensions \(h.dimensions): \(extra.reduce(1, *)) volumes, expected one 3D volume")
        }
        guard h.affine.m.allSatisfy(\.isFinite), h.affine.inverse != nil else {
            throw ImagingError(.badGeometry, path: path, "the voxel-to-world affine is singular or not finite")
        }
        return h
    }

    static func read(_ path: String) throws -> (NIfTIImage, NIfTIHeader) {
        let image = try openHeader(path)
        let header = try image.validate()
        let n = image.handle.pointee
        let expected = Int64(n.nvox) * Int64(n.nbyper)
        // For an uncompressed file, the size tells us up front whether the data is all there.
        if nifti_is_gzfile(path) == 0 {
            let size = nifti_get_filesize(path)
            if size >= 0, size < n.iname_offset + expected {
                throw ImagingError(.truncated, path: path,
                                   "file has \(size) bytes, header needs \(n.iname_offset + expected)")
            }
        }
        try image.loadRawData(bytes: Int(expected))
        return (image, header)
    }

    /// Reads the voxel bytes through libnifti's znz layer (zlib). Not `nifti_image_load`: its
    /// `nifti_read_buffer` silently replaces NaN/inf floats by 0, and TumorStream must reject them.
    private func loadRawData(bytes: Int) throws {
        guard let iname = handle.pointee.iname else {
            throw ImagingError(.notNIfTI, path: path, "libnifti found no image data file name")
        }
        var zf: znzFile? = znzopen(iname, "rb", nifti_is_gzfile(iname))
        guard zf != nil else { throw ImagingError(.missingFile, path: path, "cannot open the image data") }
        defer { Xznzclose(&zf) }
        guard znzseek(zf, off_t(handle.pointee.iname_offset), SEEK_SET) >= 0 else {
            throw ImagingError(.truncated, path: path, "cannot seek to the voxel data at byte \(handle.pointee.iname_offset)")
        }
        // malloc: nifti_image_free releases `data` with free().
        guard let buffer = malloc(max(bytes, 1)) else {
            throw ImagingError(.truncated, path: path, "cannot allocate \(bytes) bytes for the voxel data")
        }
        let got = znzread(buffer, 1, bytes, zf)
        guard got == bytes else {
            free(buffer)
            throw ImagingError(.truncated, path: path,
                               "voxel data ends after \(got) of \(bytes) bytes (truncated or corrupt file)")
        }
        let n = handle.pointee
        if n.byteorder != nifti_short_order(), n.swapsize > 1 {
            nifti_swap_Nbytes(Int64(bytes / Int(n.swapsize)), n.swapsize, buffer)
        }
        handle.pointee.data = buffer
    }

    /// Voxel data converted to Float32 in the C-order [X, Y, Z] layout, with scl_slope/scl_inter applied.
    func floatVoxels(applyScaling: Bool = true) -> [Float] {
        let n = handle.pointee
        let (nx, ny, nz) = (Int(n.nx), Int(n.ny), Int(max(1, n.nz)))
        let count = nx * ny * nz
        let slope = n.scl_slope, inter = n.scl_inter
        let scale = applyScaling && slope != 0 && slope.isFinite
        let a = Float(scale ? slope : 1), b = Float(scale ? inter : 0)
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { dst in
            let raw = UnsafeRawPointer(n.data!)
            func convert<T>(_ type: T.Type, _ f: (T) -> Float) {
                let src = raw.bindMemory(to: T.self, capacity: count)
                // NIfTI stores x fastest; write z fastest. Walk the source in order (streaming reads).
                for k in 0..<nz {
                    for j in 0..<ny {
                        let srow = src + (k * ny + j) * nx
                        var d = j * nz + k
                        for i in 0..<nx {
                            dst[d] = f(srow[i]) * a + b
                            d += ny * nz
                        }
                    }
                }
            }
            switch NIfTIDatatype(rawValue: n.datatype)! {
            case .uint8: convert(UInt8.self) { Float($0) }
            case .int8: convert(Int8.self) { Float($0) }
            case .int16: convert(Int16.self) { Float($0) }
            case .uint16: convert(UInt16.self) { Float($0) }
            case .int32: convert(Int32.self) { Float($0) }
            case .float32: convert(Float.self) { $0 }
            case .float64: convert(Double.self) { Float($0) }
            }
        }
        return out
    }
}

/// Reading and writing NIfTI-1/2 (.nii, .nii.gz) through libnifti.
public enum NIfTI {
    /// The header of a file, validated (supported datatype, one 3D volume, usable affine).
    public static func readHeader(_ path: String) throws -> NIfTIHeader {
        try NIfTIImage.openHeader(path).validate()
    }

    /// Reads a scalar volume (CT): scaling applied, NaN/inf rejected.
    public static func readVolume(_ path: String) throws -> Volume {
        let (image, header) = try NIfTIImage.read(path)
        let data = image.floatVoxels()
        let bad = data.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
        if bad > 0 {
            throw ImagingError(.nanVoxels, path: path, "\(bad) of \(data.count) voxels are NaN or infinite")
        }
        let shape = [header.dimensions[0], header.dimensions.count > 1 ? header.dimensions[1] : 1,
                     header.dimensions.count > 2 ? header.dimensions[2] : 1]
        return Volume(voxels: Tensor(shape: shape, data: data), affine: header.affine)
    }

    /// Reads a label map: every voxel must be an integer in 0...255 (after scaling, if any).
    public static func readLabels(_ path: String) throws -> LabelVolume {
        let (image, header) = try NIfTIImage.read(path)
        let data = image.floatVoxels()
        var labels = [UInt8](repeating: 0, count: data.count)
        var badCount = 0
        var firstBad: Float = 0
        for (i, v) in data.enumerated() {
            if v >= 0, v <= 255, v == v.rounded() {
                labels[i] = UInt8(v)
            } else {
                if badCount == 0 { firstBad = v }
                badCount += 1
            }
        }
        if badCount > 0 {
            throw ImagingError(.badLabel, path: path,
                               "\(badCount) voxels are not integer labels in 0...255 (first: \(firstBad))")
        }
        let shape = [header.dimensions[0], header.dimensions.count > 1 ? header.dimensions[1] : 1,
                     header.dimensions.count > 2 ? header.dimensions[2] : 1]
        return LabelVolume(labels: labels, shape: shape, affine: header.affine)
    }

    /// Reads a CT and its label and checks they share one grid (shape and affine).
    public static func readPair(ct ctPath: String, label labelPath: String) throws -> (Volume, LabelVolume) {
        let ct = try readVolume(ctPath)
        let label = try readLabels(labelPath)
        try ct.checkSameGrid(as: label, ctPath: ctPath, labelPath: labelPath)
        return (ct, label)
    }
}
