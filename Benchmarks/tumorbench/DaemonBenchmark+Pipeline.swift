extension DaemonBenchmark {
    /// Filled in once the procedural stages are in this build.
    static func pipeline(hopCPU: Double) async throws {}
}
