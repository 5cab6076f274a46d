//! The service as a mesh sees it: health checking, reflection v1 and v1alpha,
//! and a graceful stop. Needs no Milvus: these answer without one.

mod common;

use milvus_backup::api::Server;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn start() -> milvus_backup::api::ServerHandle {
    let engine = Engine::new(Context::from_config(&Config::default()).unwrap());
    Server::new(engine)
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

#[tokio::test]
async fn health_reports_serving() {
    let server = start().await;
    let mut health = HealthClient::new(channel(server.addr).await);
    for service in ["", "milvus.backup.v1.BackupService"] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }
    server.stop().await.expect("graceful stop");
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    let server = start().await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(channel(server.addr).await);
    let req = v1::ServerReflectionRequest {
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        ..Default::default()
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"milvus.backup.v1.BackupService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(server.addr).await);
    let req = v1alpha::ServerReflectionRequest {
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "milvus.backup.v1.BackupService".into(),
            ),
        ),
        ..Default::default()
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(
            resp.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
        ),
        "{resp:?}"
    );
    server.stop().await.expect("graceful stop");
}
