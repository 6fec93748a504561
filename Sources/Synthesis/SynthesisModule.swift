/// Synthesis: the crop rule, tumor geometry, blending and the procedural texture engine
/// (reference/difftumor.md §1 STEP3 and §4). Pure computation, seeded per patch.
public enum Synthesis {
    /// Patch edge of the reference, in voxels (1 mm).
    public static let patchSize = 96
}
