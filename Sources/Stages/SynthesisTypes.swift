import Synthesis

// See WireTypes.swift: Synthesis's names, seen from a file that imports only Synthesis.
// (Synthesis uses Imaging's `Organ`.)
typealias SynthOrgan = ImagingOrgan
typealias SynthTumorType = TumorType
