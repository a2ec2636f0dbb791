//! A gRPC service for tests, by hand (no protoc here): one message type and a service with a
//! unary method and a server-streaming one, written as tonic's generated code would be.
#![allow(clippy::result_large_err)] // tonic's Status is what gRPC code returns

use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tonic::codegen::{BoxFuture, BoxStream, StdError};
use tonic::{Request, Response, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
}

pub(crate) const SAY: &str = "/wharf.test.Echo/Say";
pub(crate) const COUNT: &str = "/wharf.test.Echo/Count";

#[derive(Clone)]
pub(crate) struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "wharf.test.Echo";
}

struct Say;
impl tonic::server::UnaryService<Msg> for Say {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, r: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            // What the gateway's plugin added to the request's headers.
            let seen = r
                .metadata()
                .get("x-plugin-saw")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            Ok(Response::new(Msg {
                text: format!("echo: {} (plugin: {seen})", r.into_inner().text),
            }))
        })
    }
}

/// Streams `n` messages, then ends with `aborted` in the trailers.
struct Count;
impl tonic::server::ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = BoxStream<Msg>;
    type Future = BoxFuture<Response<BoxStream<Msg>>, Status>;
    fn call(&mut self, r: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let n: usize = r.into_inner().text.parse().unwrap_or(0);
            let mut items: Vec<Result<Msg, Status>> = (0..n)
                .map(|i| {
                    Ok(Msg {
                        text: i.to_string(),
                    })
                })
                .collect();
            items.push(Err(Status::aborted("counted to the end")));
            let stream: BoxStream<Msg> = Box::pin(tokio_stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

impl<B> tower_service::Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let codec = tonic::codec::ProstCodec::<Msg, Msg>::default;
        match req.uri().path() {
            SAY => {
                Box::pin(async move { Ok(tonic::server::Grpc::new(codec()).unary(Say, req).await) })
            }
            COUNT => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .server_streaming(Count, req)
                    .await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Serves [`Echo`] over h2c on a free loopback port: its address.
pub(crate) async fn serve_echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// A client of [`Echo`] through a gateway, over h2c.
pub(crate) struct EchoClient(tonic::client::Grpc<tonic::transport::Channel>);

impl EchoClient {
    /// Connects to the gateway's `proxy` listener, sending `host` as the authority.
    pub(crate) async fn connect(proxy: std::net::SocketAddr, host: &str) -> EchoClient {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
            .unwrap()
            .origin(format!("http://{host}").parse().unwrap())
            .connect()
            .await
            .unwrap();
        EchoClient(tonic::client::Grpc::new(channel))
    }

    /// The unary call: the reply's text.
    pub(crate) async fn say(&mut self, text: &str) -> Result<String, Status> {
        self.0.ready().await.unwrap();
        let reply = self
            .0
            .unary(
                Request::new(Msg { text: text.into() }),
                SAY.parse().unwrap(),
                tonic::codec::ProstCodec::<Msg, Msg>::default(),
            )
            .await?;
        Ok(reply.into_inner().text)
    }

    /// The server stream of `n` messages: what arrived, then the status its trailers carried.
    pub(crate) async fn count(&mut self, n: usize) -> (Vec<String>, Status) {
        self.0.ready().await.unwrap();
        let mut stream = self
            .0
            .server_streaming(
                Request::new(Msg {
                    text: n.to_string(),
                }),
                COUNT.parse().unwrap(),
                tonic::codec::ProstCodec::<Msg, Msg>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(m)) => got.push(m.text),
                Ok(None) => panic!("the stream ended without its trailers' status"),
                Err(status) => return (got, status),
            }
        }
    }
}
