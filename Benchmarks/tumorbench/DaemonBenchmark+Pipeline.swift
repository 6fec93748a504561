import Kernels
import Stages
import Wire

extension DaemonBenchmark {
    /// The procedural synthesis stages (cropper → encoder → sampler → blender) on the phantom:
    /// called directly in a loop (baseline) and run by the stage runtime over inproc with a
    /// loader and a null sink (candidate). CPU seconds of the process per patch; the ratio − 1 is
    /// the runtime's overhead as a fraction of synthesis time. Wall time per patch is printed too
    /// (the runtime overlaps stages on the two cores).
    static func pipeline(hopCPU: Double) async throws {
        var config = PipelineConfig()
        config.seed = 11
        config.data.phantomCases = 1
        config.data.patchesPerCase = 1_000_000
        let provider = try PhantomCases(cases: 1, seed: 1, organ: "liver")
        let patches = 6
        let runs = 10

        func direct() throws -> (cpu: Double, wall: Double) {
            let loader = try LoaderStage(provider: provider, config: config, replica: 0, replicas: 1)
            _ = try loader.next()  // loads and caches the case outside the timing
            let stages: [PatchProcessor] = [try CropperStage(config: config), try EncoderStage(config: config),
                                            try SamplerStage(config: config), try BlenderStage(config: config)]
            let c0 = cpuSeconds(), t0 = now()
            for _ in 0..<patches {
                guard var p = try loader.next() else { break }
                for s in stages { guard let out = try s.process(p) else { break }; p = out }
            }
            return ((cpuSeconds() - c0) / Double(patches), (now() - t0) / Double(patches))
        }

        final class Preloaded: CaseProvider {
            let c: LoadedCase
            init(_ c: LoadedCase) { self.c = c }
            var caseCount: Int { 1 }
            func load(_ index: Int) throws -> LoadedCase { c }
        }
        let preloaded = Preloaded(try provider.load(0))

        func staged(_ tag: String) async throws -> (cpu: Double, wall: Double) {
            var c = config
            c.data.maxPatches = patches
            var specs: [StageSpec] = []
            var source = StageSpec(name: "loader", role: .source { r, n in
                try LoaderStage(provider: preloaded, config: c, replica: r, replicas: n)
            })
            source.output = "inproc://\(tag).cropper"
            specs.append(source)
            let names = ["cropper", "encoder", "sampler", "blender", "sink"]
            for (i, name) in names.enumerated() {
                let role: StageSpec.Role
                switch name {
                case "cropper": role = .processor { _ in try CropperStage(config: c) }
                case "encoder": role = .processor { _ in try EncoderStage(config: c) }
                case "sampler": role = .processor { _ in try SamplerStage(config: c) }
                case "blender": role = .processor { _ in try BlenderStage(config: c) }
                default: role = .processor { _ in NullSink() }
                }
                var s = StageSpec(name: name, role: role)
                s.input = "inproc://\(tag).\(name)"
                if i + 1 < names.count { s.output = "inproc://\(tag).\(names[i + 1])" }
                s.idleTimeout = 0.2
                specs.append(s)
            }
            let r = try await run(specs)
            return (r.cpu / Double(patches), r.wall / Double(patches))
        }

        var base: [(cpu: Double, wall: Double)] = []
        var cand: [(cpu: Double, wall: Double)] = []
        for r in 0...runs {
            let d = try direct()
            let s = try await staged("p\(r)")
            if r == 0 { continue }  // warm-up
            base.append(d)
            cand.append(s)
        }
        let bc = median(base.map(\.cpu)), cc = median(cand.map(\.cpu))
        let bw = median(base.map(\.wall)), cw = median(cand.map(\.wall))
        print("synthesis_cpu_per_patch(direct vs runtime)  \(fmt(bc * 1000))  \(fmt(cc * 1000))  \(fmt(cc / bc))")
        print("synthesis_wall_per_patch(direct vs runtime)  \(fmt(bw * 1000))  \(fmt(cw * 1000))  \(fmt(cw / bw))")
        print("runtime overhead: \(fmt((cc - bc) / bc * 100))% of synthesis CPU per patch "
              + "(\(runs) runs × \(patches) patches, medians); one pass-through hop: \(fmt(hopCPU / bc * 100))%")
    }
}
