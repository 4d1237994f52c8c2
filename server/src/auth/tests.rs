use axum::http::Method;

use super::*;

#[test]
fn scopes_parse_and_print() {
    let s = Scopes::parse_list("read, ingest").unwrap();
    assert!(s.contains(Scope::Read) && s.contains(Scope::Ingest));
    assert!(!s.contains(Scope::Admin));
    assert_eq!(s.to_string(), "ingest,read");
    assert!(Scopes::ALL.covers(s) && !s.covers(Scopes::ALL));
    assert!(Scopes::parse_list("read,").is_err());
    assert!(Scopes::parse_list("write").is_err());
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, r#"["ingest","read"]"#);
    assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), s);
    assert!(serde_json::from_str::<Scopes>(r#"["root"]"#).is_err());
}

#[test]
fn principals_see_their_team_only() {
    let team = Principal {
        key_id: Some("k".into()),
        teams: Teams::One("fraud".into()),
        scopes: Scopes::of(&[Scope::Read]),
    };
    assert!(team.sees_team(Some("fraud")));
    assert!(!team.sees_team(Some("ads")));
    assert!(
        !team.sees_team(None),
        "models without a team are the operators'"
    );
    assert!(team.require(Scope::Read).is_ok());
    let e = team.require(Scope::Admin).unwrap_err();
    assert_eq!(e.kind(), driftdb_engine::ErrorKind::PermissionDenied);
    assert!(team.require_operator("x").is_err());
    let op = Principal::unrestricted();
    assert!(op.sees_team(None) && op.sees_team(Some("ads")));
}

#[test]
fn every_grpc_method_has_its_scope() {
    let read = Need::Scope(Scope::Read);
    let ingest = Need::Scope(Scope::Ingest);
    let admin = Need::Scope(Scope::Admin);
    for (path, need) in [
        ("/driftdb.v1.Models/CreateModel", admin),
        ("/driftdb.v1.Models/GetModel", read),
        ("/driftdb.v1.Models/ListModels", read),
        ("/driftdb.v1.Models/UploadReference", ingest),
        ("/driftdb.v1.Ingest/IngestInferences", ingest),
        ("/driftdb.v1.Ingest/IngestLabels", ingest),
        ("/driftdb.v1.Query/Query", read),
        ("/driftdb.v1.Query/DriftSummary", read),
        ("/driftdb.v1.Query/Report", read),
        ("/driftdb.v1.Rules/CreateRule", admin),
        ("/driftdb.v1.Rules/ListRules", read),
        ("/driftdb.v1.Rules/DeleteRule", admin),
        ("/driftdb.v1.Rules/AnnounceEvent", ingest),
        ("/driftdb.v1.Rules/CreateSilence", admin),
        ("/driftdb.v1.Rules/ListSilences", read),
        ("/driftdb.v1.Rules/ExpireSilence", admin),
        ("/driftdb.v1.Alerts/WatchAlerts", read),
        ("/driftdb.v1.Alerts/ListAlerts", read),
        ("/driftdb.v1.Alerts/AcknowledgeAlert", admin),
        ("/driftdb.v1.Admin/CreateKey", admin),
        ("/driftdb.v1.Admin/ListKeys", admin),
        ("/driftdb.v1.Admin/RevokeKey", admin),
        ("/grpc.reflection.v1.ServerReflection/Info", admin),
    ] {
        assert_eq!(grpc_need(path), need, "{path}");
    }
}

#[test]
fn http_routes_have_their_scope() {
    assert_eq!(http_need(&Method::GET, "/healthz"), Need::Open);
    assert_eq!(http_need(&Method::GET, "/ui"), Need::Open);
    assert_eq!(
        http_need(&Method::GET, "/metrics"),
        Need::OperatorScope(Scope::Read)
    );
    assert_eq!(
        http_need(&Method::GET, "/ingest/rejects"),
        Need::OperatorScope(Scope::Read)
    );
    assert_eq!(
        http_need(&Method::GET, "/admin/checkpoints"),
        Need::OperatorScope(Scope::Read)
    );
    assert_eq!(
        http_need(&Method::POST, "/admin/checkpoint"),
        Need::OperatorScope(Scope::Admin)
    );
    assert_eq!(
        http_need(&Method::POST, "/api/v1/read"),
        Need::Scope(Scope::Read)
    );
    assert_eq!(
        http_need(&Method::GET, "/rules/{id}"),
        Need::Scope(Scope::Read)
    );
    assert_eq!(
        http_need(&Method::DELETE, "/rules/{id}"),
        Need::Scope(Scope::Admin)
    );
    for (method, route, need) in [
        (Method::GET, "/silences", Scope::Read),
        (Method::GET, "/models/{id}/report", Scope::Read),
        (Method::GET, "/models", Scope::Read),
        (Method::GET, "/alerts/watch", Scope::Read),
        (Method::GET, "/silences/{id}", Scope::Read),
        (Method::POST, "/silences", Scope::Admin),
        (Method::DELETE, "/silences/{id}", Scope::Admin),
        (Method::POST, "/alerts/{seq}/ack", Scope::Admin),
    ] {
        assert_eq!(
            http_need(&method, route),
            Need::Scope(need),
            "{method} {route}"
        );
    }
    assert_eq!(
        http_need(&Method::POST, "/models/{id}/alerts"),
        Need::Scope(Scope::Admin)
    );
    assert_eq!(
        http_need(&Method::POST, "/models/{id}/events"),
        Need::Scope(Scope::Ingest)
    );
    assert_eq!(
        http_need(&Method::GET, "/admin/keys"),
        Need::Scope(Scope::Admin)
    );
    assert_eq!(http_need(&Method::GET, "/nope"), Need::Scope(Scope::Admin));
}
