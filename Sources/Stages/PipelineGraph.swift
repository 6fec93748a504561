/// Turns a `PipelineConfig` into the `StageSpec`s this process runs: the whole graph (`tumord
/// run`) or one stage (`tumord stage NAME [--replica K]`). Edges: each stage binds its input, the
/// stage before it connects its PUSH socket to every replica of that input.
public enum PipelineGraph {
    public enum Selection: Equatable {
        /// Every stage, every replica, in this process.
        case all
        /// One stage; `replica: nil` runs all of its replicas here as threads.
        case stage(StageName, replica: Int?)
    }

    /// Creates the work of a stage; `StandardStages` is the real one, tests pass their own.
    public typealias RoleFactory = (_ stage: StageName, _ config: PipelineConfig) throws -> StageSpec.Role

    /// `stateDirectory`: where replicas keep their journals (`StageJournal`); `tumord stage`
    /// passes `runtime.state_dir` or a default, `tumord run` none (its stages cannot be
    /// restarted one by one).
    public static func specs(_ config: PipelineConfig, selection: Selection, host: String = "",
                             stateDirectory: String? = nil, roles: RoleFactory) throws -> [StageSpec] {
        try config.validate()
        let chosen: [StageName]
        switch selection {
        case .all: chosen = config.pipeline
        case .stage(let name, let replica):
            guard config.pipeline.contains(name) else {
                throw ConfigError(keyPath: "pipeline", "has no stage \(name) (stages: \(config.pipeline.map(\.rawValue)))")
            }
            if let replica, !(0..<config.stage(name).replicas).contains(replica) {
                throw ConfigError(keyPath: "stages.\(name).replicas",
                                  "is \(config.stage(name).replicas): replica \(replica) does not exist")
            }
            chosen = [name]
        }
        return try chosen.map { name in
            let s = config.stage(name)
            let replicas: [Int]
            if case .stage(_, let replica?) = selection { replicas = [replica] } else { replicas = Array(0..<s.replicas) }
            var spec = StageSpec(name: name.rawValue, role: try roles(name, config), replicas: replicas,
                                 totalReplicas: s.replicas)
            spec.input = s.input
            spec.inputHWM = s.hwm
            if let next = config.next(after: name) {
                let n = config.stage(next)
                spec.output = n.input
                spec.outputReplicas = n.replicas
                spec.outputHWM = n.hwm
            } else if let external = s.output {
                spec.output = external
                spec.outputBinds = true
                spec.outputHWM = s.outputHWM
            }
            if let previous = config.previous(before: name) {
                spec.expectedEndOfStreams = config.stage(previous).replicas
            }
            spec.stateDirectory = stateDirectory
            spec.tap = s.tap
            spec.tapHWM = s.tapHWM
            spec.control = s.control
            spec.delayMilliseconds = s.delayMilliseconds
            spec.idleTimeout = config.runtime.idleTimeout
            spec.drainTimeout = config.runtime.drainTimeout
            spec.lingerMilliseconds = config.runtime.lingerMilliseconds
            spec.sendsEndOfStream = true
            spec.host = host
            return spec
        }
    }
}
