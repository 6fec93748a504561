import COpenBLAS

/// The number of threads OpenBLAS may use in this process. Each stage sets its budget
/// so that two stages on two cores do not oversubscribe.
public enum BLASThreads {
    public static var count: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }
}
