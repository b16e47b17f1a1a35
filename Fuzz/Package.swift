// swift-tools-version:6.1
// libFuzzer targets for the parsers that read bytes from the network or the disk. Built apart
// from the main package (its own .build) by Scripts/fuzz.sh, with libFuzzer and AddressSanitizer
// (`--sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address`; the script says why not two flags):
// `bash Scripts/fuzz.sh TARGET SECONDS` builds and runs one; `Scripts/fuzz.sh all SECONDS` every one.
import PackageDescription

let core = ["FuzzChunkFrame", "FuzzBlobPath", "FuzzRingJSON", "FuzzRequestToken"]
let s3 = ["FuzzSigV4", "FuzzAwsChunked", "FuzzS3Headers", "FuzzS3XML", "FuzzPostForm", "FuzzPostPolicy"]

let package = Package(
    name: "BlobstoreFuzz",
    platforms: [.macOS(.v15)],
    products: (core + s3).map { .executable(name: $0, targets: [$0]) },
    dependencies: [.package(name: "Blobstore", path: "..")],
    targets: core.map {
        .executableTarget(name: $0, dependencies: [.product(name: "BlobCore", package: "Blobstore")])
    }
        + s3.map {
            .executableTarget(
                name: $0,
                dependencies: [
                    .product(name: "BlobCore", package: "Blobstore"),
                    .product(name: "BlobS3Wire", package: "Blobstore"),
                ])
        }
)
