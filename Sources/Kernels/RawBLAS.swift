import COpenBLAS

/// Direct access to OpenBLAS for baselines (benchmarks) outside this module, which never imports COpenBLAS.
public enum RawBLAS {
    /// OpenBLAS build configuration (`openblas_get_config`), e.g. "OpenBLAS 0.3.x DYNAMIC_ARCH ... SkylakeX".
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// Row-major `C[m×n] = A[m×k]·B[k×n]` through `cblas_sgemm`, no transposes.
    public static func sgemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                             c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k),
                    b, Int32(n), 0, c, Int32(n))
    }
}
