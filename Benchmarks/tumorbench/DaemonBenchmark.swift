import Dispatch
import Foundation
import Kernels
import Logging
import ServiceLifecycle
import Stages
import Wire

/// `tumorbench daemon`: what the stage runtime costs per patch.
///
/// 1. `hop`: a chain loader → K pass-through stages → sink over inproc with 96³ patches (CT
///    float32 + label + mask, 5.3 MB). CPU seconds per patch per hop, against the baseline of
///    one memcpy of the same bytes measured in the same run.
/// 2. `pipeline` (needs the procedural stages): the cropper, sampler and blender called directly
///    in a loop (baseline) against the same stages inside the runtime (candidate), CPU per patch;
///    the ratio - 1 is the runtime overhead as a fraction of synthesis time.
enum DaemonBenchmark {
    static let patchSide = 96

    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// A 96³ patch like the cropper emits.
    static func patch(_ id: Int) -> PatchMessage {
        let n = patchSide * patchSide * patchSide
        var p = PatchMessage(patchID: UInt64(id), sourceCase: "bench", seed: UInt64(id), synthesize: id % 2 == 0)
        p.setPayload(Payload.ct, .float32(Tensor(shape: [patchSide, patchSide, patchSide], repeating: 0.25)))
        p.setPayload(Payload.label, .uint8([UInt8](repeating: 1, count: n), shape: [patchSide, patchSide, patchSide]))
        p.setPayload(Payload.tumorMask, .uint8([UInt8](repeating: 0, count: n), shape: [patchSide, patchSide, patchSide]))
        return p
    }

    /// A loader → cropper message: a whole phantom-sized volume (CT float32 + label uint8).
    static func volumeMessage() -> PatchMessage {
        let shape = [200, 160, 160]
        var p = PatchMessage(patchID: 0, sourceCase: "bench", seed: 1, synthesize: true)
        p.setPayload(Payload.ct, .float32(Tensor(shape: shape, repeating: 0.25)))
        p.setPayload(Payload.label, .uint8([UInt8](repeating: 1, count: shape.reduce(1, *)), shape: shape))
        return p
    }

    final class ReplaySource: PatchSource {
        let count: Int
        let template: PatchMessage
        var i = 0
        init(count: Int, volume: Bool = false) {
            self.count = count
            template = volume ? DaemonBenchmark.volumeMessage() : DaemonBenchmark.patch(0)
        }
        func next() throws -> PatchMessage? {
            guard i < count else { return nil }
            var p = template
            p.patchID = UInt64(i)
            i += 1
            return p
        }
    }

    final class NullSink: PatchProcessor {
        func process(_ patch: PatchMessage) throws -> PatchMessage? { nil }
    }

    static func logger() -> Logger {
        var l = Logger(label: "bench") { StreamLogHandler.standardError(label: $0) }
        l.logLevel = .error
        return l
    }

    /// Runs specs to completion; returns (wall, cpu) seconds.
    static func run(_ specs: [StageSpec]) async throws -> (wall: Double, cpu: Double) {
        let context = try ZMQContext()
        let pipeline = PipelineService(specs: specs, context: context, logger: logger())
        let configs: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: pipeline, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .cancelGroup)
        ]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: configs, logger: logger()))
        let c0 = cpuSeconds(), t0 = now()
        try await group.run()
        let result = (now() - t0, cpuSeconds() - c0)
        try context.close()
        return result
    }

    static func chain(hops: Int, patches: Int, tag: String, volume: Bool = false) -> [StageSpec] {
        var specs: [StageSpec] = []
        var source = StageSpec(name: "loader", role: .source { _, _ in ReplaySource(count: patches, volume: volume) })
        source.output = "inproc://\(tag).0"
        specs.append(source)
        for h in 0..<hops {
            var s = StageSpec(name: "hop\(h)", role: .processor { _ in PassThroughProcessor() })
            s.input = "inproc://\(tag).\(h)"
            s.output = "inproc://\(tag).\(h + 1)"
            s.idleTimeout = 0.2
            specs.append(s)
        }
        var sink = StageSpec(name: "sink", role: .processor { _ in NullSink() })
        sink.input = "inproc://\(tag).\(hops)"
        sink.idleTimeout = 0.2
        specs.append(sink)
        return specs
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    static func memcpyBaseline() -> Double {
        let bytes = patchSide * patchSide * patchSide * 6
        let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { a.deallocate(); b.deallocate() }
        memset(a, 1, bytes)
        memset(b, 0, bytes)
        var times: [Double] = []
        var checksum = 0
        for r in 0..<11 {
            let t0 = now()
            for i in 0..<20 {
                if i % 2 == 0 { memcpy(b, a, bytes) } else { memcpy(a, b, bytes) }
                checksum &+= Int(b.load(fromByteOffset: (i * 4099) % bytes, as: UInt8.self))
            }
            let t = (now() - t0) / 20
            if r > 0 { times.append(t) }
        }
        if checksum == -1 { print(checksum) }
        return median(times)
    }

    static func main(_ arguments: [String]) async throws {
        #if DEBUG
        print("!!! DEBUG build: numbers are meaningless !!!")
        #endif
        if arguments.contains("--malloc-tuned") { MallocTuning.apply() }
        print("malloc tuned: \(arguments.contains("--malloc-tuned"))")
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB")
        print("name  baseline_ms  candidate_ms  ratio")
        let copy = memcpyBaseline()
        let patches = 40
        let hops = 4
        var perHop: [Double] = []
        var perHopWall: [Double] = []
        // One warm-up, then 10 timed runs. Subtract the 0-hop chain (source + sink) to isolate a hop.
        for r in 0..<11 {
            let base = try await run(chain(hops: 0, patches: patches, tag: "b\(r)"))
            let full = try await run(chain(hops: hops, patches: patches, tag: "f\(r)"))
            if r == 0 { continue }
            perHop.append((full.cpu - base.cpu) / Double(patches * hops))
            perHopWall.append((full.wall - base.wall) / Double(patches * hops))
        }
        let hop = median(perHop)
        print("hop_cpu_per_patch(96^3,5.3MB)  \(fmt(copy * 1000))  \(fmt(hop * 1000))  \(fmt(hop / copy))")
        print("hop_wall_per_patch  \(fmt(copy * 1000))  \(fmt(median(perHopWall) * 1000))  \(fmt(median(perHopWall) / copy))")
        // The loader → cropper edge carries a whole volume (200×160×160 phantom: 25.6 MB).
        var volumeHop: [Double] = []
        for r in 0..<11 {
            let base = try await run(chain(hops: 0, patches: 10, tag: "vb\(r)", volume: true))
            let full = try await run(chain(hops: 1, patches: 10, tag: "vf\(r)", volume: true))
            if r > 0 { volumeHop.append((full.cpu - base.cpu) / 10) }
        }
        let vcopy = copy * 25.6 / 5.3
        print("volume_hop_cpu_per_message(25.6MB, baseline memcpy)  \(fmt(vcopy * 1000))  \(fmt(median(volumeHop) * 1000))  \(fmt(median(volumeHop) / vcopy))")
        try await DaemonBenchmark.pipeline(hopCPU: hop)
    }

    static func fmt(_ v: Double) -> String { String(format: "%.3f", v) }
}
