// swift-tools-version:6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Blobstore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "blobctl", targets: ["blobctl"]),
        .library(name: "BlobCore", targets: ["BlobCore"]),
        .library(name: "BlobClient", targets: ["BlobClient"]),
        .library(name: "BlobMaster", targets: ["BlobMaster"]),
        .library(name: "BlobChunkServer", targets: ["BlobChunkServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // Debian's libzstd and libxxhash behind module maps: glue, not code.
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        .systemLibrary(
            name: "CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]
        ),
        // Pure shared core: ids, hashing, chunker, codec, frame, ring, errors, limits.
        .target(
            name: "BlobCore",
            dependencies: [
                "CZstd",
                "CXXHash",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // Role libraries: they import the core and never each other.
        .target(name: "BlobMaster", dependencies: ["BlobCore"], swiftSettings: strictSettings),
        .target(name: "BlobChunkServer", dependencies: ["BlobCore"], swiftSettings: strictSettings),
        .target(name: "BlobClient", dependencies: ["BlobCore"], swiftSettings: strictSettings),
        .executableTarget(
            name: "blobctl",
            dependencies: [
                "BlobCore",
                "BlobMaster",
                "BlobChunkServer",
                "BlobClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobCoreTests",
            dependencies: ["BlobCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobctlTests",
            dependencies: ["blobctl", "BlobCore"],
            swiftSettings: strictSettings
        ),
    ]
)
