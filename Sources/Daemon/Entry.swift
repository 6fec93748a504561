import Kernels

/// The process entry point: picks the right OpenBLAS kernels before anything else runs,
/// then hands over to the command line.
@main
enum Entry {
    static func main() async {
        // Debian's OpenBLAS falls back to generic kernels on newer Xeons; this re-executes once
        // with OPENBLAS_CORETYPE set (never when the variable is already set by the environment).
        BLASCoreType.reexecIfUnrecognised()
        await TumorD.main()
    }
}
