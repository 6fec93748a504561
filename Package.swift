// swift-tools-version:6.0
import PackageDescription

// Layers, in dependency order (never backwards):
//   Kernels (tensors, ops, models, weights; the only BLAS user)
//   Imaging (NIfTI I/O, preprocessing, phantom)
//   Synthesis (crop rule, tumor geometry, blending, procedural texture)
//   Wire (messages, protobuf-c, ZeroMQ; the only user of those two)
//   Stages (one file per stage + runtime)
//   Daemon (executable `tumord`: CLI, config, wiring, lifecycle)
// Debian keeps libnifti's headers in their own folder; every importer of CNIfTI needs it.
let niftiHeaders = SwiftSetting.unsafeFlags(["-Xcc", "-I/usr/include/nifti"])

let package = Package(
    name: "TumorStream",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tumord", targets: ["Daemon"]),
        .executable(name: "tumorbench", targets: ["tumorbench"]),
        .library(name: "Kernels", targets: ["Kernels"]),
        .library(name: "Imaging", targets: ["Imaging"]),
        .library(name: "Synthesis", targets: ["Synthesis"]),
        .library(name: "Wire", targets: ["Wire"]),
        .library(name: "Stages", targets: ["Stages"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // Thin system-library modules: a modulemap and a shim header, no logic.
        .systemLibrary(name: "CNIfTI", path: "Sources/CNIfTI"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas"),
        .systemLibrary(name: "CLibZMQ", path: "Sources/CLibZMQ", pkgConfig: "libzmq"),
        .systemLibrary(name: "CProtobufC", path: "Sources/CProtobufC", pkgConfig: "libprotobuf-c"),
        // protoc-c output for proto/tumorstream.proto (scripts/gen-proto; CI checks it is current).
        .target(name: "CTumorStreamProto", dependencies: ["CProtobufC"], path: "Sources/CTumorStreamProto"),

        // AVX-512 micro-kernels (compiled for skylake-avx512): Kernels calls them only after a CPU check.
        .target(name: "KernelsAVX512",
                swiftSettings: [.unsafeFlags(["-target-cpu", "skylake-avx512"]),
                                .unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        .target(name: "Kernels", dependencies: ["COpenBLAS", "KernelsAVX512"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        .target(name: "Imaging", dependencies: ["Kernels", "CNIfTI"],
                swiftSettings: [niftiHeaders, .unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        .target(name: "Synthesis", dependencies: ["Kernels", "Imaging"]),
        .target(name: "Wire", dependencies: ["Kernels", "CLibZMQ", "CProtobufC", "CTumorStreamProto"]),
        .target(name: "Stages", dependencies: [
            "Kernels", "Imaging", "Synthesis", "Wire",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "Daemon", dependencies: [
            "Kernels", "Imaging", "Synthesis", "Wire", "Stages",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "tumorbench", dependencies: [
            "Kernels", "Imaging", "Synthesis", "Wire",
            "Stages", .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], path: "Benchmarks/tumorbench"),

        .testTarget(name: "KernelsTests", dependencies: ["Kernels"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "Kernels"]),
        .testTarget(name: "SynthesisTests", dependencies: ["Synthesis", "Imaging", "Kernels"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "Kernels"]),
        .testTarget(name: "StagesTests", dependencies: ["Stages", "Wire", "Kernels"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Imaging", "Kernels"]),
    ],
    swiftLanguageModes: [.v5]
)
