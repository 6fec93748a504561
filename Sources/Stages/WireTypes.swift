import Wire

// Wire, Imaging and Synthesis each define `Organ` (and Wire and Synthesis `TumorType`), and each
// module also has a type named like the module, so `Wire.Organ` does not parse. Files that need
// one of them use these names; this file sees only Wire's.
typealias WireOrgan = Organ
typealias WireTumorType = TumorType
