//! TLS on both listeners with a certificate made for the test (a throw-away CA and a leaf for
//! `localhost` and `127.0.0.1`): the handshake succeeds with the CA, fails without it, and the
//! TLS ports refuse plaintext.

use std::sync::Arc;
use std::time::Duration;

use driftdb_cli::client::{Client, ClientConfig};
use driftdb_engine::time::{Clock, ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::{AuthMode, KeySpec, Scope, Scopes};
use driftdb_server::node::Node;
use driftdb_server::serve::{ServeOptions, TlsIdentity};
use driftdb_storage::StoreConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::fixture::t0;

/// A CA certificate (PEM) and a server certificate chain and key signed by it.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "driftdb test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "driftdb test server");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_with_the_ca_and_refuses_everything_else() {
    driftdb_server::tls::install_crypto_provider();
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
    let node = Node::open(
        dir.path(),
        StoreConfig::default(),
        Arc::new(clock.clone()),
        AuthMode::Required,
    )
    .unwrap();
    let key = node
        .auth
        .keys()
        .create(
            KeySpec {
                name: "tls".into(),
                team: None,
                scopes: Scopes::of(&[Scope::Read, Scope::Admin]),
                created_by: None,
            },
            clock.now(),
        )
        .unwrap()
        .token;
    // A bad key file fails at start-up, not at the first handshake.
    assert!(TlsIdentity::from_pem(p.cert_pem.clone().into(), b"not a key".to_vec()).is_err());
    assert!(TlsIdentity::from_pem(b"no cert".to_vec(), p.key_pem.clone().into()).is_err());
    let identity =
        TlsIdentity::from_pem(p.cert_pem.clone().into(), p.key_pem.clone().into()).unwrap();
    let running = driftdb_server::serve::start_with(
        node,
        ServeOptions {
            grpc: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            tls: Some(identity),
        },
    )
    .await
    .unwrap();
    let (grpc, http) = (running.bound.grpc, running.bound.http);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &p.ca_pem).unwrap();

    // gRPC with the CA (the CLI's --ca-cert path): the handshake and a call succeed.
    let cfg = ClientConfig {
        url: format!("https://127.0.0.1:{}", grpc.port()),
        api_key: Some(key.clone()),
        ca_cert: Some(ca_file.clone()),
    };
    let mut c = Client::connect_with(&cfg).await.unwrap();
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(driftdb_server::convert::model_to_pb(
                &super::fixture::model("tls_m", None),
                vec![],
            )),
        })
        .await
        .unwrap();
    let listed = c
        .models
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.models[0].id, "tls_m");
    // The same by the name in the certificate.
    let by_name = ClientConfig {
        url: format!("https://localhost:{}", grpc.port()),
        ..cfg.clone()
    };
    Client::connect_with(&by_name).await.unwrap();

    // Without the CA (system roots only), the server's certificate is not trusted.
    let untrusted = ClientConfig {
        ca_cert: None,
        ..cfg.clone()
    };
    let e = Client::connect_with(&untrusted)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
    // Plaintext to the TLS port gets no answer it can use.
    let plain = ClientConfig {
        url: format!("http://127.0.0.1:{}", grpc.port()),
        ca_cert: None,
        ..cfg.clone()
    };
    match Client::connect_with(&plain).await {
        Err(_) => {}
        Ok(mut c) => {
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                c.models.list_models(pb::ListModelsRequest {}),
            )
            .await;
            assert!(!matches!(r, Ok(Ok(_))), "a plaintext call succeeded");
        }
    }

    // HTTP: the same with the CA, refused without it, and plaintext gets nothing.
    let ca = reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = trusting
        .get(format!("https://127.0.0.1:{}/healthz", http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = trusting
        .get(format!("https://localhost:{}/admin/keys", http.port()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = reqwest::Client::new()
        .get(format!("https://127.0.0.1:{}/healthz", http.port()))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect() || e.is_request(), "{e:?}");
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/healthz", http.port()))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP answered: {plain:?}");
    running.shutdown().await.unwrap();
}
