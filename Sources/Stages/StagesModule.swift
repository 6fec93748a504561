/// Stages: one file per pipeline stage (loader, cropper, encoder, sampler, blender, trainer)
/// plus the runtime that gives each its thread and sockets.
public enum StageName: String, CaseIterable, Sendable {
    case loader, cropper, encoder, sampler, blender, trainer, writer
}
