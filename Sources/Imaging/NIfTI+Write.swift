import CNIfTI
import Foundation
import Kernels

extension NIfTI {
    /// How a CT volume is stored on disk.
    public enum CTStorage: Sendable {
        /// Float32 values as they are.
        case float32
        /// Int16 values rounded and clamped to the int16 range (HU), no scaling.
        case int16
    }

    /// Writes a scalar volume (`.nii` or `.nii.gz` by the name) with pixdim, qform and sform
    /// both set from `volume.affine` (codes: scanner for the qform, aligned for the sform).
    public static func write(_ volume: Volume, to path: String, as storage: CTStorage = .float32) throws {
        let dtype: NIfTIDatatype = storage == .float32 ? .float32 : .int16
        try write(shape: volume.shape, affine: volume.affine, datatype: dtype, to: path) { base, count in
            volume.voxels.withUnsafeBufferPointer { src in
                let s = volume.shape
                switch storage {
                case .float32:
                    let dst = base.bindMemory(to: Float.self, capacity: count)
                    cToFortran(src, shape: s) { dst[$0] = $1 }
                case .int16:
                    let dst = base.bindMemory(to: Int16.self, capacity: count)
                    cToFortran(src, shape: s) { dst[$0] = Int16(max(-32768, min(32767, $1.rounded()))) }
                }
            }
        }
    }

    /// Writes a label map as uint8.
    public static func write(_ labels: LabelVolume, to path: String) throws {
        try write(shape: labels.shape, affine: labels.affine, datatype: .uint8, to: path) { base, count in
            let dst = base.bindMemory(to: UInt8.self, capacity: count)
            labels.labels.withUnsafeBufferPointer { src in cToFortran(src, shape: labels.shape) { dst[$0] = $1 } }
        }
    }

    /// Visits C-order [X, Y, Z] elements with their NIfTI (x fastest) flat index.
    @inline(__always)
    static func cToFortran<T>(_ src: UnsafeBufferPointer<T>, shape s: [Int], _ put: (Int, T) -> Void) {
        let (nx, ny, nz) = (s[0], s[1], s[2])
        for k in 0..<nz {
            for j in 0..<ny {
                let base = (k * ny + j) * nx
                var c = j * nz + k
                for i in 0..<nx {
                    put(base + i, src[c])
                    c += ny * nz
                }
            }
        }
    }

    private static func write(shape: [Int], affine: Affine, datatype: NIfTIDatatype, to path: String,
                              fill: (UnsafeMutableRawPointer, Int) -> Void) throws {
        _ = NIfTIImage.quietLibrary
        let lower = path.lowercased()
        guard lower.hasSuffix(".nii") || lower.hasSuffix(".nii.gz") else {
            throw ImagingError(.writeFailed, path: path, "file name must end in .nii or .nii.gz")
        }
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !dir.isEmpty, !(FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) {
            throw ImagingError(.writeFailed, path: path, "directory \(dir) does not exist")
        }
        guard affine.inverse != nil, affine.m.allSatisfy(\.isFinite) else {
            throw ImagingError(.writeFailed, path: path, "the affine is singular or not finite")
        }
        var dims: [Int64] = [3, Int64(shape[0]), Int64(shape[1]), Int64(shape[2]), 1, 1, 1, 1]
        guard let nim = nifti_make_new_nim(&dims, datatype.rawValue, 1) else {
            throw ImagingError(.writeFailed, path: path, "libnifti could not allocate the image")
        }
        defer { nifti_image_free(nim) }
        let count = shape.reduce(1, *)
        fill(nim.pointee.data, count)

        // Geometry: sform = affine exactly; qform = its closest rigid+scale (quaternion) form.
        let sp = affine.spacing
        nim.pointee.dx = sp[0]; nim.pointee.dy = sp[1]; nim.pointee.dz = sp[2]
        withUnsafeMutableBytes(of: &nim.pointee.pixdim) { raw in
            let p = raw.bindMemory(to: Double.self)
            p[1] = sp[0]; p[2] = sp[1]; p[3] = sp[2]
        }
        var m = nifti_dmat44()
        withUnsafeMutableBytes(of: &m.m) { raw in
            let p = raw.bindMemory(to: Double.self)
            for i in 0..<16 { p[i] = affine.m[i] }
        }
        nim.pointee.sto_xyz = m
        nim.pointee.sto_ijk = nifti_dmat44_inverse(m)
        nim.pointee.sform_code = 2  // NIFTI_XFORM_ALIGNED_ANAT
        var qb = 0.0, qc = 0.0, qd = 0.0, qx = 0.0, qy = 0.0, qz = 0.0, dx = 0.0, dy = 0.0, dz = 0.0, qfac = 0.0
        nifti_dmat44_to_quatern(m, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac)
        nim.pointee.quatern_b = qb; nim.pointee.quatern_c = qc; nim.pointee.quatern_d = qd
        nim.pointee.qoffset_x = qx; nim.pointee.qoffset_y = qy; nim.pointee.qoffset_z = qz
        nim.pointee.qfac = qfac
        nim.pointee.qto_xyz = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac)
        nim.pointee.qto_ijk = nifti_dmat44_inverse(nim.pointee.qto_xyz)
        nim.pointee.qform_code = 1  // NIFTI_XFORM_SCANNER_ANAT
        nim.pointee.xyz_units = 2   // NIFTI_UNITS_MM
        nim.pointee.scl_slope = 1; nim.pointee.scl_inter = 0
        nim.pointee.nifti_type = 1  // NIFTI-1 single file

        guard nifti_set_filenames(nim, path, 0, 1) == 0 else {
            throw ImagingError(.writeFailed, path: path, "libnifti rejected the file name")
        }
        // libnifti's nifti_image_write reports nothing; remove any old file and check the result.
        try? FileManager.default.removeItem(atPath: path)
        nifti_image_write(nim)
        guard FileManager.default.fileExists(atPath: path),
              let h = try? NIfTI.readHeader(path), h.dimensions == shape else {
            throw ImagingError(.writeFailed, path: path, "libnifti did not write a readable file (permissions? disk full?)")
        }
    }
}
