/// The product's version, as `blobctl --version` prints it and `blob_build_info` reports it.
public enum Blobstore {
    public static let version = "0.1.0"
}
