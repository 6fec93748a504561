import CLibZMQ

/// Wire: patch messages, the protobuf-c bridge and ZeroMQ sockets. No other module touches either library.
public enum Wire {
    /// The linked libzmq version, as "major.minor.patch".
    public static var zmqVersion: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}
