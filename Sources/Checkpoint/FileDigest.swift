import CCrypto

/// Incremental SHA-256 (OpenSSL's libcrypto, which uses the CPU's SHA instructions where present).
public final class SHA256Digest {
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        self.context = context
        precondition(EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1, "EVP_DigestInit_ex(sha256) failed")
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        precondition(EVP_DigestUpdate(context, base, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    /// The digest as lowercase hex; the object must not be updated afterwards.
    public func finalizeHex() -> String {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &out, &length) == 1, "EVP_DigestFinal_ex failed")
        return out.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    public static func hex(of bytes: UnsafeRawBufferPointer) -> String {
        let digest = SHA256Digest()
        digest.update(bytes)
        return digest.finalizeHex()
    }
}
