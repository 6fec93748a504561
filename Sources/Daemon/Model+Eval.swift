import ArgumentParser
import Foundation
import Kernels

extension TumorD.Model {
    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one component of the networks on tensors from a safetensors file.",
            discussion: """
            Components and their input → output keys (network layout (B, C, D, H, W)):
              encode    input → output (unquantised latent)      autoencoder file
              decode    latent → output (with codebook snap)     autoencoder file
              quantize  latent → indices (int64)                 autoencoder file
              unet      x, cond, --timestep → output (ε)         diffusion file
              ddpm      x_T, cond, noise.t{T-1..1} → output      diffusion file
              ddim      x_T, cond, --steps → output              diffusion file
            """)

        enum Component: String, ExpressibleByArgument, CaseIterable { case encode, decode, quantize, unet, ddpm, ddim }

        @Option(help: "Autoencoder or diffusion checkpoint (.ckpt, .pt or .safetensors).")
        var checkpoint: String

        @Option(help: "encode, decode, quantize, unet, ddpm or ddim.")
        var component: Component

        @Option(help: "Input safetensors file.")
        var input: String

        @Option(help: "Output safetensors file.")
        var output: String

        @Option(help: "Prefix of the input keys (e.g. 'ddpm.' to read golden.safetensors directly).")
        var inputPrefix: String = ""

        @Option(help: "Timestep for the unet component.")
        var timestep: Int?

        @Option(help: "Number of DDIM steps.")
        var steps: Int = 50

        @Option(help: "Worker threads for the network ops (OpenBLAS is then run single-threaded inside each worker).")
        var threads: Int?

        func validate() throws {
            if component == .unet && timestep == nil { throw ValidationError("--timestep is required for the unet component") }
            if steps < 1 { throw ValidationError("--steps must be at least 1") }
        }

        func run() throws {
            if let threads {
                // Workers split the GEMMs themselves; OpenBLAS stays single-threaded (no spinning threads).
                KernelContext.threads = max(1, threads)
                BLASThreads.count = 1
            }
            let inputs = try Safetensors.read(path: input)
            func tensor(_ key: String) throws -> Tensor { try load(inputs, key) }
            let sd = try ModelFiles.stateDict(path: checkpoint)
            var items: [Safetensors.Item] = []
            switch component {
            case .encode:
                let vq = try ModelFiles.vqgan(sd)
                let x = try tensor("input")
                try requireDivisible(x, by: 1 << vq.architecture.levels, what: "autoencoder input", channels: vq.architecture.imageChannels)
                items.append(.init("output", vq.encode(x)))
            case .decode:
                let vq = try ModelFiles.vqgan(sd)
                let z = try tensor("latent")
                try requireDivisible(z, by: 1, what: "latent", channels: vq.architecture.embeddingDim)
                items.append(.init("output", vq.decode(z, quantize: true)))
            case .quantize:
                let vq = try ModelFiles.vqgan(sd)
                let z = try tensor("latent")
                try requireDivisible(z, by: 1, what: "latent", channels: vq.architecture.embeddingDim)
                let idx = vq.quantize(z)
                let shape = [z.shape[0]] + Array(z.shape.dropFirst(2))
                items.append(.init("indices", Tensor(shape: shape, data: idx.map(Float.init)), asInt64: true))
            case .unet:
                let unet = try ModelFiles.unet(sd)
                let (x, c) = try unetInputs(unet, inputs, xKey: "x")
                items.append(.init("output", unet(x, cond: c, timesteps: [Float](repeating: Float(timestep!), count: x.shape[0]))))
            case .ddpm:
                let model = try ModelFiles.diffusion(sd)
                let (x, c) = try unetInputs(model.denoiser, inputs, xKey: "x_T")
                var noises: [Int: Tensor] = [:]
                for t in 1..<model.schedule.timesteps {
                    let n = try tensor("noise.t\(t)")
                    guard n.shape == x.shape else {
                        throw ModelCommandError(description: "noise.t\(t) has shape \(n.shape), x_T has \(x.shape)")
                    }
                    noises[t] = n
                }
                items.append(.init("output", model.sampleDDPM(xT: x, cond: c, noise: { noises[$0]! })))
            case .ddim:
                let model = try ModelFiles.diffusion(sd)
                guard steps <= model.schedule.timesteps else {
                    throw ModelCommandError(description: "--steps \(steps) exceeds the model's \(model.schedule.timesteps) timesteps")
                }
                let (x, c) = try unetInputs(model.denoiser, inputs, xKey: "x_T")
                items.append(.init("output", model.sampleDDIM(xT: x, cond: c, steps: steps)))
            }
            try Safetensors.write(items, to: output, metadata: ["component": component.rawValue])
            for it in items { print("\(it.name) \(it.tensor.shape)") }
        }

        func requireDivisible(_ t: Tensor, by m: Int, what: String, channels: Int) throws {
            guard t.shape[1] == channels else {
                throw ModelCommandError(description: "\(what) has \(t.shape[1]) channels (shape \(t.shape)), the model expects \(channels)")
            }
            guard t.shape.dropFirst(2).allSatisfy({ $0 > 0 && $0 % m == 0 }) else {
                throw ModelCommandError(description: "\(what) shape \(t.shape): spatial sizes must be positive multiples of \(m)")
            }
        }

        func load(_ inputs: StateDict, _ key: String) throws -> Tensor {
            let t = try inputs.tensor(inputPrefix + key)
            guard t.rank == 5 else {
                throw ModelCommandError(description: "input '\(inputPrefix + key)' in \(input) has shape \(t.shape), expected (B, C, D, H, W)")
            }
            return t
        }

        func unetInputs(_ unet: Unet3D, _ inputs: StateDict, xKey: String) throws -> (Tensor, Tensor) {
            let a = unet.architecture
            let x = try load(inputs, xKey), c = try load(inputs, "cond")
            let m = 1 << (a.levelDims.count - 1)
            try requireDivisible(x, by: 1, what: xKey, channels: a.outputChannels)
            guard c.shape[0] == x.shape[0], Array(c.shape.dropFirst(2)) == Array(x.shape.dropFirst(2)),
                  c.shape[1] == a.inputChannels - a.outputChannels else {
                throw ModelCommandError(description: "cond shape \(c.shape) does not fit \(xKey) \(x.shape) (needs \(a.inputChannels - a.outputChannels) channels)")
            }
            guard x.shape[3] % m == 0, x.shape[4] % m == 0 else {
                throw ModelCommandError(description: "\(xKey) shape \(x.shape): H and W must be multiples of \(m)")
            }
            return (x, c)
        }
    }
}
