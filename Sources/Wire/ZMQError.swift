import CLibZMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed ZeroMQ call: the function, the errno and what libzmq says about it, and (when known)
/// the socket type and endpoint involved.
public struct ZMQError: Error, CustomStringConvertible {
    /// What went wrong, in a form a caller can switch on. `.terminated` means the context was shut
    /// down (`ZMQContext.shutdown()`/`close()`): a stage treats it as "stop", not as a failure.
    public struct Code: Hashable, CustomStringConvertible {
        private enum Base: Hashable { case terminated, system(Int32) }
        private let base: Base
        public static let terminated = Code(base: .terminated)
        public static func system(_ errno: Int32) -> Code { Code(base: .system(errno)) }
        public var description: String {
            switch base {
            case .terminated: return "terminated"
            case .system(let e): return "errno \(e)"
            }
        }
    }

    public let code: Code
    public let errno: Int32
    public let function: String
    public let socketType: ZMQSocketType?
    public let endpoint: String?
    public let file: String
    public let line: Int

    public init(errno: Int32, function: String, socketType: ZMQSocketType? = nil, endpoint: String? = nil,
                file: String = #fileID, line: Int = #line) {
        self.code = errno == ETERM ? .terminated : .system(errno)
        self.errno = errno
        self.function = function
        self.socketType = socketType
        self.endpoint = endpoint
        self.file = file
        self.line = line
    }

    public var isTerminated: Bool { code == .terminated }

    public var description: String {
        var s = "ZeroMQ error \(errno) (\(String(cString: zmq_strerror(errno)))) in \(function)"
        if let socketType { s += " on a \(socketType) socket" }
        if let endpoint { s += " at \(endpoint)" }
        return s + " [\(file):\(line)]"
    }
}

/// The outcome of a call that may not complete immediately (non-blocking mode or a timeout).
public enum ZMQCallResult<Value> {
    case done(Value)
    case wouldBlock
}

/// The single errno choke point for libzmq calls (STYLE §9): `body` returns the C return code,
/// negative on failure. errno is read immediately after the call (`@inline(never)` keeps ARC
/// traffic from running in between). EINTR retries, EAGAIN becomes `.wouldBlock`, ETERM throws a
/// `.terminated` error, anything else throws a `ZMQError` naming `function`.
@inline(never)
func zmqCall(where function: String = #function, socketType: ZMQSocketType? = nil, endpoint: String? = nil,
             file: String = #fileID, line: Int = #line,
             _ body: () -> Int32) throws -> ZMQCallResult<Int32> {
    while true {
        let rc = body()
        if rc >= 0 { return .done(rc) }
        let err = zmq_errno()
        switch err {
        case EINTR: continue
        case EAGAIN: return .wouldBlock
        default:
            throw ZMQError(errno: err, function: function, socketType: socketType, endpoint: endpoint,
                           file: file, line: line)
        }
    }
}

/// `zmqCall` for calls that never legitimately return EAGAIN (setsockopt, bind, ...):
/// EAGAIN is reported as an error like any other errno.
@inline(never)
func zmqCheck(where function: String = #function, socketType: ZMQSocketType? = nil, endpoint: String? = nil,
              file: String = #fileID, line: Int = #line,
              _ body: () -> Int32) throws {
    while true {
        if body() >= 0 { return }
        let err = zmq_errno()
        if err == EINTR { continue }
        throw ZMQError(errno: err, function: function, socketType: socketType, endpoint: endpoint,
                       file: file, line: line)
    }
}
