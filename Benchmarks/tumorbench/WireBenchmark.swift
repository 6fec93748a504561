import Foundation
import Kernels
import Wire

/// `tumorbench wire [--runs 10] [--per-run 32] [--side 96] [--hwm 4] [--no-python]`
///
/// Throughput of 96³ patches (CT float32 + label uint8 + tumor mask uint8 = 5.31 MB) through
/// PUSH→PULL, against raw libzmq measured in the same run over the same connection:
///   raw:   zmq_send_const of the three voxel buffers (no header, no encoding, zero-copy) →
///          zmq_msg_recv and discard (Swift) / pyzmq recv_multipart(copy=False) (Python)
///   wire:  PatchMessage.encode + ZMQSocket.send (protobuf header + zero-copy tensor frames) →
///          ZMQSocket.receive + PatchMessage.decode (validated, payloads left in their frames)
///          (Swift) / tumorstream.PatchStream (header parse, validation, numpy views) (Python)
///   wire+copy (Swift only): as wire, then `materialized()`: the payloads copied into Tensor and
///          [UInt8] values, what a stage that computes on the voxels pays.
/// The Python receiver runs twice: as is, and with tumorstream.keep_freed_memory() (glibc malloc
/// thresholds fixed so that receive buffers are reused rather than faulted in per patch); in each
/// run raw and wire share the process and its settings.
/// One connection carries the variants in alternating blocks of `perRun` patches (so all see the
/// same load on a shared machine); the first round is a discarded warm-up, then `runs` rounds are
/// timed at the receiver while the sender keeps the pipe full; the order of the variants rotates
/// each round. Reported: the median block, its throughput relative to raw ("vs raw"), the median
/// over rounds of the same ratio within one round ("paired", robust to changing load), and for
/// the Python receiver its process CPU time per patch (all threads, libzmq's I/O thread included:
/// the cost of receiving, much less sensitive to how busy the machine is).
enum WireBenchmark {
    struct Options {
        var runs = 10
        var perRun = 32
        var side = 96
        var hwm = 4
        var python = true
    }

    enum Variant: String, CaseIterable {
        case raw, wire, wireCopy = "wire+copy"
    }

    static func run(_ args: [String]) throws {
        setvbuf(stdout, nil, _IOLBF, 0)  // one line at a time, also into a pipe
        var o = Options()
        var i = 0
        while i < args.count {
            let next = { () -> Int in
                i += 1
                guard i < args.count, let v = Int(args[i]) else { WireSend.fail("\(args[i - 1]) needs an integer") }
                return v
            }
            switch args[i] {
            case "--runs": o.runs = next()
            case "--per-run": o.perRun = next()
            case "--side": o.side = next()
            case "--hwm": o.hwm = next()
            case "--no-python": o.python = false
            default: WireSend.fail("unknown argument \(args[i])")
            }
            i += 1
        }
        let message = WireSend.patch(0, side: o.side)
        let bytes = message.payloadByteCount
        print("tumorbench wire: \(o.side)³ patch = CT float32 + label uint8 + mask uint8 = \(bytes) bytes "
              + "(\(String(format: "%.2f", Double(bytes) / 1e6)) MB); HWM \(o.hwm); \(o.runs) timed rounds × "
              + "\(o.perRun) patches per variant after 1 warm-up round; median block")
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, libzmq \(Wire.zmqVersion)")
        print("")
        print(pad("case", 30) + pad("variant", 11) + pad("ms/patch", 10) + pad("GB/s", 8) + pad("patches/s", 11)
              + pad("vs raw", 8) + pad("paired", 8) + "rx CPU ms/patch")

        let context = try ZMQContext()
        let senderContext = try ZMQContext()  // the tcp sender has its own I/O thread, as in another process
        defer { try? context.close(); try? senderContext.close() }
        var cases: [(String, () throws -> Measured)] = [
            ("swift→swift inproc", { Measured(times: try swiftCase(context, context, "inproc://bench", message, o), cpu: [:]) }),
            ("swift→swift tcp 127.0.0.1", { Measured(times: try swiftCase(context, senderContext, "tcp://127.0.0.1:*", message, o), cpu: [:]) }),
        ]
        if o.python {
            cases.append(("swift→python tcp 127.0.0.1", { try pythonCase(senderContext, message, o, tuned: false) }))
            cases.append(("  same, keep_freed_memory", { try pythonCase(senderContext, message, o, tuned: true) }))
        }
        for (name, body) in cases {
            let measured = try body()
            let times = measured.times
            guard let rawTimes = times[.raw] else { continue }
            let raw = median(rawTimes)
            for v in Variant.allCases {
                guard let ts = times[v] else { continue }
                let t = median(ts)
                let perSecond = Double(o.perRun) / t
                // Paired: the median over rounds of raw/variant within the same round (robust to
                // load that changes between rounds).
                let paired = median(zip(rawTimes, ts).map { $0 / $1 })
                print(pad(name, 30) + pad(v.rawValue, 11) + pad(f(t / Double(o.perRun) * 1000), 10)
                      + pad(f(Double(bytes) * perSecond / 1e9), 8) + pad(String(format: "%.0f", perSecond), 11)
                      + pad(f(raw / t), 8) + pad(f(paired), 8)
                      + (measured.cpu[v].map { f(median($0) / Double(o.perRun) * 1000) } ?? "-"))
            }
        }
    }

    /// Block times per variant, and (Python receiver) the receiving process's CPU time per block.
    struct Measured {
        var times: [Variant: [Double]]
        var cpu: [Variant: [Double]]
    }

    static func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    /// The variants in the order of round `round`: rotated each round, so that no variant always
    /// runs first (after the switch) or last.
    static func order(_ variants: [Variant], round: Int) -> [Variant] {
        let k = round % variants.count
        return Array(variants[k...] + variants[..<k])
    }
    static func f(_ x: Double) -> String { String(format: "%.3f", x) }
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }

    /// The voxel buffers of `message` (kept alive by `message`).
    static func rawBuffers(_ message: PatchMessage) -> [UnsafeRawBufferPointer] {
        message.payloads.map { p -> UnsafeRawBufferPointer in
            switch p.data {
            case .float32(let t): return t.withUnsafeBufferPointer { UnsafeRawBufferPointer($0) }
            case .uint8(let b, _), .raw(let b, _, _): return b.withUnsafeBytes { $0 }
            case .received(let r): return r.withUnsafeBytes { $0 }
            }
        }
    }

    /// A PUSH socket bound or connected here, then handed to the sender thread (ZeroMQ allows moving
    /// a socket to another thread across a full memory barrier, which starting a thread is).
    static func makePush(_ context: ZMQContext, _ endpoint: String, bind: Bool, hwm: Int) throws -> ZMQSocket {
        let push = try ZMQSocket(context: context, type: .push)
        try push.set([.sendHighWaterMark(hwm), .sendTimeout(milliseconds: 60_000)])
        if bind { try push.bind(endpoint) } else { try push.connect(endpoint) }
        return push
    }

    /// Sends `rounds` rounds of blocks, one block of `perBlock` messages per variant, from a thread
    /// that owns `push` from now on and closes it.
    static func startSender(_ push: ZMQSocket, _ message: PatchMessage, variants: [Variant], rounds: Int,
                            perBlock: Int) -> Thread {
        let thread = Thread {
            do {
                let buffers = rawBuffers(message)
                var m = message
                var k: UInt64 = 0
                sending: for round in 0..<rounds {
                    for v in order(variants, round: round) {
                        for _ in 0..<perBlock {
                            let sent: Bool
                            if v == .raw {
                                sent = try push.sendRawConstant(buffers)
                            } else {
                                m.patchID = k
                                k += 1
                                sent = try push.send(m.encode())
                            }
                            if !sent {
                                FileHandle.standardError.write(Data("tumorbench wire: receiver stopped reading\n".utf8))
                                break sending
                            }
                        }
                    }
                }
                withExtendedLifetime(message) {}
            } catch {
                FileHandle.standardError.write(Data("tumorbench wire: sender failed: \(error)\n".utf8))
            }
            push.close(lingerMilliseconds: 30_000)
        }
        thread.start()
        return thread
    }

    static func swiftCase(_ context: ZMQContext, _ senderContext: ZMQContext, _ endpoint: String,
                          _ message: PatchMessage, _ o: Options) throws -> [Variant: [Double]] {
        let pull = try ZMQSocket(context: context, type: .pull)
        defer { pull.close() }
        try pull.set([.receiveHighWaterMark(o.hwm), .receiveTimeout(milliseconds: 60_000)])
        try pull.bind(endpoint)
        let variants = Variant.allCases
        let push = try makePush(senderContext, pull.lastEndpoint ?? endpoint, bind: false, hwm: o.hwm)
        let sender = startSender(push, message, variants: variants, rounds: o.runs + 1, perBlock: o.perRun)
        var times: [Variant: [Double]] = [:]
        var checksum: Float = 0
        for round in 0...o.runs {
            for v in order(variants, round: round) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<o.perRun {
                    switch v {
                    case .raw:
                        guard let n = try pull.receiveRawDiscarding() else { throw BenchError("receive timed out") }
                        checksum += Float(n & 1)
                    case .wire:
                        guard let frames = try pull.receive() else { throw BenchError("receive timed out") }
                        let m = try PatchMessage.decode(frames: frames)
                        guard case .received(let r)? = m.payload(Payload.ct) else { throw BenchError("no ct payload") }
                        checksum += r.withUnsafeBytes { $0.load(fromByteOffset: 4, as: Float.self) }
                    case .wireCopy:
                        guard let frames = try pull.receive() else { throw BenchError("receive timed out") }
                        let m = try PatchMessage.decode(frames: frames).materialized()
                        guard case .float32(let t)? = m.payload(Payload.ct) else { throw BenchError("no ct payload") }
                        checksum += t[flat: 1]
                    }
                }
                if round > 0 { times[v, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
            }
        }
        while !sender.isFinished { usleep(1000) }
        if checksum.isNaN { print("checksum \(checksum)") }
        return times
    }

    /// The sender binds (as the last stage does); a Python process connects and receives
    /// alternating raw blocks (pyzmq only) and wire blocks (tumorstream.PatchStream).
    static func pythonCase(_ context: ZMQContext, _ message: PatchMessage, _ o: Options, tuned: Bool) throws -> Measured {
        let push = try makePush(context, "tcp://127.0.0.1:*", bind: true, hwm: o.hwm)
        let endpoint = push.lastEndpoint!
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-m", "tumorstream.bench", "--endpoint", endpoint,
                             "--runs", "\(o.runs)", "--per-run", "\(o.perRun)", "--hwm", "\(o.hwm)"]
            + (tuned ? ["--keep-freed-memory"] : [])
        var env = ProcessInfo.processInfo.environment
        let clientPath = FileManager.default.currentDirectoryPath + "/clients/python"
        env["PYTHONPATH"] = clientPath + (env["PYTHONPATH"].map { ":" + $0 } ?? "")
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let sender = startSender(push, message, variants: [.raw, .wire], rounds: o.runs + 1, perBlock: o.perRun)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !sender.isFinished { usleep(1000) }
        guard process.terminationStatus == 0,
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let raw = json["raw"] as? [Double], let wire = json["client"] as? [Double],
              let rawCPU = json["raw_cpu"] as? [Double], let wireCPU = json["client_cpu"] as? [Double] else {
            throw BenchError("python receiver failed (status \(process.terminationStatus)): \(String(decoding: data, as: UTF8.self))")
        }
        return Measured(times: [.raw: raw, .wire: wire], cpu: [.raw: rawCPU, .wire: wireCPU])
    }

    struct BenchError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = "tumorbench wire: " + d }
    }
}
