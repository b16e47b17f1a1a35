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
        .library(name: "BlobS3Wire", targets: ["BlobS3Wire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.20.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.25.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.0.0"),
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
        // How components reach each other: http or https, the trust roots every client inside the
        // cluster verifies servers against, and a server's certificate, reloadable.
        .target(
            name: "BlobTransport",
            dependencies: [
                "BlobCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSettings
        ),
        // HTTP glue shared by the server roles: JSON errors, the status mapping, request counting,
        // metrics, probes and request logs.
        .target(
            name: "BlobServerSupport",
            dependencies: [
                "BlobCore",
                "BlobTransport",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Role libraries: they import the core and never each other.
        .target(
            name: "BlobMaster",
            dependencies: [
                "BlobCore",
                "BlobTransport",
                "BlobServerSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BlobChunkServer",
            dependencies: [
                "BlobCore",
                "BlobTransport",
                "BlobServerSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BlobClient",
            dependencies: [
                "BlobCore",
                "BlobTransport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // S3's wire formats, with no server: signatures (SigV4, V2, presigned), aws-chunked bodies,
        // checksums, errors and XML, Range headers. The gateway speaks them; the fuzz targets
        // (Fuzz/) read them without building a server.
        .target(
            name: "BlobS3Wire",
            dependencies: [
                "BlobCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strictSettings
        ),
        // The HTTP and S3 front end, on the client library.
        .target(
            name: "BlobGateway",
            dependencies: [
                "BlobCore",
                "BlobS3Wire",
                "BlobClient",
                "BlobServerSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // What tests share: a manual clock, the route-authentication check, an in-process
        // cluster with fault injection.
        .target(
            name: "BlobTestSupport",
            dependencies: [
                "BlobCore",
                "BlobServerSupport",
                "BlobMaster",
                "BlobChunkServer",
                "BlobClient",
                "BlobGateway",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "blobctl",
            dependencies: [
                "BlobCore",
                "BlobTransport",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                "BlobServerSupport",
                "BlobMaster",
                "BlobChunkServer",
                "BlobClient",
                "BlobGateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobCoreTests",
            dependencies: ["BlobCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobTransportTests",
            dependencies: ["BlobCore", "BlobTransport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobGatewayTests",
            dependencies: ["BlobGateway", "BlobS3Wire", "BlobTestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobMasterTests",
            dependencies: [
                "BlobMaster", "BlobCore", "BlobClient", "BlobServerSupport", "BlobTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobChunkServerTests",
            dependencies: [
                "BlobChunkServer",
                "BlobServerSupport",
                "BlobTestSupport",
                "BlobCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strictSettings
        ),
        // In-process clusters: the servers' code as services in the test process, with faults.
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "BlobTestSupport", "BlobCore", "BlobClient", "BlobChunkServer", "BlobMaster",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "BlobctlTests",
            dependencies: [
                "blobctl", "BlobCore", "BlobChunkServer", "BlobTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
