import Foundation
import Wire

/// The sink for offline dataset generation: saves each patch's CT and label as NIfTI into
/// `writer.out_dir` and appends one line per patch to `patches.tsv` there (id, source case,
/// seed, organ, synthesized, tumor type, crop origin), flushed on finish. The seed in each line
/// re-creates the patch exactly.
public final class WriterStage: PatchProcessor {
    let files: PatchFiles
    let replica: Int
    private var index: FileHandle?
    private var written: UInt64 = 0
    private var synthesized: UInt64 = 0

    public init(config: PipelineConfig, replica: Int) throws {
        let dir = config.writer.outputDirectory
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw ConfigError(keyPath: "writer.out_dir", "cannot create directory '\(dir)': \(error.localizedDescription)")
        }
        files = PatchFiles(directory: dir, huInt16: config.writer.huInt16, compress: config.writer.compress)
        self.replica = replica
        let indexPath = (dir as NSString).appendingPathComponent(replica == 0 ? "patches.tsv" : "patches.\(replica).tsv")
        if !FileManager.default.fileExists(atPath: indexPath) {
            FileManager.default.createFile(atPath: indexPath,
                                           contents: Data("patch\tcase\tseed\torgan\tsynthesized\ttumor\torigin\n".utf8))
        }
        index = FileHandle(forWritingAtPath: indexPath)
        _ = try index?.seekToEnd()
    }

    public func process(_ patch: PatchMessage) throws -> PatchMessage? {
        do {
            try files.write(patch)
        } catch let error as PatchFiles.WriteError {
            throw StageRejection("bad-payload", error.description)
        }
        let line = "\(patch.patchID)\t\(patch.sourceCase)\t\(patch.seed)\t\(patch.organ)\t\(patch.synthesize)\t\(patch.tumorType)\t"
            + patch.patchOrigin.map(String.init).joined(separator: ",") + "\n"
        index?.write(Data(line.utf8))
        written += 1
        if patch.synthesize { synthesized += 1 }
        return nil
    }

    public func finish() throws {
        try index?.synchronize()
        try index?.close()
        index = nil
    }

    public func counters() -> [(name: String, value: UInt64)] { [("written", written), ("synthesized", synthesized)] }
}
