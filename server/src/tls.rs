//! TLS plumbing shared by the server and its HTTP client: one rustls crypto provider (ring)
//! for the whole process.

/// Installs ring as rustls' process-wide crypto provider, once; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
