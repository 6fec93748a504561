import Synthesis

// See WireTypes.swift: Synthesis's names, seen from a file that imports only Synthesis.
typealias SynthOrgan = Organ
typealias SynthTumorType = TumorType
