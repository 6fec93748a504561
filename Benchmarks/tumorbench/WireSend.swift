import Foundation
import Kernels
import Wire

/// `tumorbench wire-send`: a small test sender for the Python client's tests and for trying a
/// trainer by hand. Sends deterministic patches (values the receiver can check), optionally a few
/// bad messages first, then an end-of-stream marker.
///
///   tumorbench wire-send --endpoint tcp://127.0.0.1:5560 [--bind] [--count 5] [--side 96]
///                        [--pub] [--hwm 4] [--bad]
/// Patch k: ct[i] = Float(i % 997) / 997 + k (float32, [1,S,S,S]); label[i] = (i + k) % 3 (uint8,
/// [S,S,S]); tumor_mask[i] = 1 if (i + k) % 5 == 0 (uint8, [S,S,S]); seed 1000 + k; organ liver;
/// tumor type TumorType.allCases[k % 5]; synthesize = k odd; source_case "phantom-k".
enum WireSend {
    static func patch(_ k: Int, side: Int) -> PatchMessage {
        let n = side * side * side
        var ct = Tensor(uninitialized: [1, side, side, side])
        ct.withUnsafeMutableBufferPointer { b in for i in 0..<n { b[i] = Float(i % 997) / 997 + Float(k) } }
        let label = (0..<n).map { UInt8(($0 + k) % 3) }
        let mask = (0..<n).map { UInt8(($0 + k) % 5 == 0 ? 1 : 0) }
        var affine = [Double](repeating: 0, count: 16)
        for i in 0..<4 { affine[i * 5] = 1 }
        return PatchMessage(
            patchID: UInt64(k), sourceCase: "phantom-\(k)", seed: UInt64(1000 + k), organ: .liver,
            tumorType: TumorType.allCases[k % TumorType.allCases.count], synthesize: k % 2 == 1,
            volumeShape: [side * 2, side * 2, side * 2], patchOrigin: [k, 0, 0], spacing: [1, 1, 1], affine: affine,
            payloads: [Payload(name: Payload.ct, data: .float32(ct)),
                       Payload(name: Payload.label, data: .uint8(label, shape: [side, side, side])),
                       Payload(name: Payload.tumorMask, data: .uint8(mask, shape: [side, side, side]))],
            provenance: [StageTiming(stage: "wire-send", startedUnix: Date().timeIntervalSince1970, seconds: 0)],
            createdUnix: Date().timeIntervalSince1970)
    }

    static func run(_ args: [String]) throws {
        var endpoint = "tcp://127.0.0.1:5560", bind = false, count = 5, side = 96, pub = false, hwm = 4, bad = false
        var i = 0
        func value() -> String {
            i += 1
            guard i < args.count else { fail("missing value after \(args[i - 1])") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--endpoint": endpoint = value()
            case "--bind": bind = true
            case "--count": count = Int(value()) ?? { fail("--count needs an integer") }()
            case "--side": side = Int(value()) ?? { fail("--side needs an integer") }()
            case "--hwm": hwm = Int(value()) ?? { fail("--hwm needs an integer") }()
            case "--pub": pub = true
            case "--bad": bad = true
            default: fail("unknown argument \(args[i])")
            }
            i += 1
        }
        let context = try ZMQContext()
        let socket = try ZMQSocket(context: context, type: pub ? .pub : .push)
        try socket.set(.sendHighWaterMark(hwm))
        if bind { try socket.bind(endpoint) } else { try socket.connect(endpoint) }
        if pub { usleep(300_000) }  // let subscribers join before the first message (slow joiner)
        if bad {
            var wrongVersion = patch(0, side: 2).encode()
            var header = patch(0, side: 2).encodeHeader()
            header[1] = 0x63  // schema version 99
            wrongVersion[0] = .bytes(header)
            try socket.send(wrongVersion)
            try socket.send(Array(patch(0, side: 2).encode().dropLast()))  // a payload frame missing
        }
        for k in 0..<count { try socket.send(patch(k, side: side).encode()) }
        try socket.send(PatchMessage.endOfStream(patchID: UInt64(count)).encode())
        socket.close(lingerMilliseconds: 10_000)
        try context.close()
        print("wire-send: sent \(count) patches (\(side)³)\(bad ? " and 2 bad messages" : "") to \(endpoint)")
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("wire-send: \(message)\n".utf8))
        exit(2)
    }
}
