import Imaging

// See WireTypes.swift: Imaging's names, seen from a file that imports only Imaging.
typealias ImagingOrgan = Organ
