import BlobCore
