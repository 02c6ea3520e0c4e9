//! The bus over real CURVE sockets on 127.0.0.1 ephemeral ports, in one process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::bus::{Authenticator, Bus, BusError, Client, Incoming, Server};
use sluice_core::keys::KeyPair;
use sluice_proto::v1::{envelope::Kind, Envelope};

/// Admits the keys it knows, as the given user, and remembers every key it was asked about.
#[derive(Default)]
struct Keys {
    known: Mutex<Vec<([u8; 32], String)>>,
    asked: Mutex<Vec<[u8; 32]>>,
}

impl Keys {
    fn admit(&self, key: &KeyPair, user: &str) {
        self.known
            .lock()
            .unwrap()
            .push((*key.public(), user.to_string()));
    }

    fn asked(&self) -> Vec<[u8; 32]> {
        self.asked.lock().unwrap().clone()
    }
}

impl Authenticator for Keys {
    fn authenticate(&self, client_public: &[u8; 32], _peer: &str) -> Option<String> {
        self.asked.lock().unwrap().push(*client_public);
        self.known
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == client_public)
            .map(|(_, u)| u.clone())
    }
}

struct Cluster {
    bus: Bus,
    keys: Arc<Keys>,
    server_key: KeyPair,
    server: Server,
}

fn cluster() -> Cluster {
    let keys = Arc::new(Keys::default());
    let bus = Bus::new(keys.clone()).expect("bus");
    let server_key = KeyPair::generate();
    let server = bus.serve("tcp://127.0.0.1:0", &server_key).expect("serve");
    Cluster {
        bus,
        keys,
        server_key,
        server,
    }
}

/// A served cluster and a client admitted as `user`, connected to it. The bus is returned
/// so the test holds it as long as the sockets.
fn admitted_client(user: &str) -> (Bus, Server, Client) {
    let Cluster {
        bus,
        keys,
        server_key,
        server,
    } = cluster();
    let client_key = KeyPair::generate();
    keys.admit(&client_key, user);
    let client = bus
        .connect(server.endpoint(), server_key.public(), &client_key)
        .expect("connect");
    (bus, server, client)
}

fn request(method: &str, body: &[u8]) -> Envelope {
    Envelope {
        method: method.into(),
        body: body.to_vec(),
        ..Default::default()
    }
}

fn reply_to(request: &Envelope) -> Envelope {
    Envelope {
        id: request.id,
        method: request.method.clone(),
        kind: Kind::Reply as i32,
        body: request.body.clone(),
        ..Default::default()
    }
}

async fn recv_within(server: &mut Server, within: Duration) -> Option<Incoming> {
    tokio::time::timeout(within, server.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_carries_the_authenticated_user() {
    let Cluster {
        bus,
        keys,
        server_key,
        mut server,
    } = cluster();
    let client_key = KeyPair::generate();
    keys.admit(&client_key, "alice");
    let client = bus
        .connect(server.endpoint(), server_key.public(), &client_key)
        .unwrap();

    let replier = server.replier();
    let seen = tokio::spawn(async move {
        let incoming = server.recv().await.expect("a request");
        replier
            .reply(&incoming.peer, reply_to(&incoming.envelope))
            .unwrap();
        incoming
    });
    let started_ms = sluice_core::now_ms();
    let reply = client
        .call(request("echo", b"hello"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply.body, b"hello");
    assert_eq!(reply.kind, Kind::Reply as i32);

    let incoming = seen.await.unwrap();
    assert_eq!(incoming.peer.user_id, "alice");
    assert!(!incoming.peer.routing_id.is_empty());
    assert_eq!(incoming.envelope.kind, Kind::Request as i32);
    assert_eq!(incoming.envelope.method, "echo");
    assert_eq!(reply.id, incoming.envelope.id);
    // The deadline was filled in from the timeout.
    let deadline = incoming.envelope.deadline_ms;
    assert!(
        deadline >= started_ms + 4_900 && deadline <= sluice_core::now_ms() + 5_100,
        "deadline {deadline}, started {started_ms}"
    );
    assert_eq!(keys.asked(), vec![*client_key.public()]);

    // Dropping everything does not hang, even with a connection still up.
    let dropped = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        drop(client);
        drop(bus);
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(dropped < Duration::from_secs(3), "drop took {dropped:?}");
}

/// `CALLS` calls from `TASKS` tasks on one client, all started at once; every reply must
/// carry its own request's body.
async fn many_calls(client: &Client, tasks: usize, calls: usize) -> usize {
    let mut spawned = Vec::new();
    for t in 0..tasks {
        let client = client.clone();
        spawned.push(tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for c in (t..calls).step_by(tasks) {
                let client = client.clone();
                set.spawn(async move {
                    let body = format!("{c}");
                    let reply = client
                        .call(request("echo", body.as_bytes()), Duration::from_secs(30))
                        .await?;
                    Ok::<_, BusError>((body, reply))
                });
            }
            let mut ok = 0;
            while let Some(done) = set.join_next().await {
                let (body, reply) = done.unwrap().unwrap();
                assert_eq!(reply.body, format!("re:{body}").into_bytes());
                ok += 1;
            }
            ok
        }));
    }
    let mut total = 0;
    for task in spawned {
        total += task.await.unwrap();
    }
    total
}

fn re(incoming: &Incoming) -> Envelope {
    let mut reply = reply_to(&incoming.envelope);
    reply.body = [b"re:".as_slice(), &incoming.envelope.body].concat();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_get_their_own_replies() {
    const TASKS: usize = 16;
    const CALLS: usize = 1000;
    let (_bus, mut server, client) = admitted_client("bob");

    // First the server takes every request before answering any, then answers in reverse
    // order: all of them are in flight at once and none comes back in the order it left.
    // Then it answers each from a task of its own after a delay that varies, while it goes
    // on receiving: replies from many tasks race the server's own reads.
    let replier = server.replier();
    let answered = tokio::spawn(async move {
        let mut all = Vec::with_capacity(CALLS);
        while all.len() < CALLS {
            match recv_within(&mut server, Duration::from_secs(20)).await {
                Some(incoming) => all.push(incoming),
                None => break,
            }
        }
        let first = all.len();
        for incoming in all.into_iter().rev() {
            replier.reply(&incoming.peer, re(&incoming)).unwrap();
        }
        let mut second = 0;
        while second < CALLS {
            let Some(incoming) = recv_within(&mut server, Duration::from_secs(20)).await else {
                break;
            };
            second += 1;
            let replier = replier.clone();
            let delay = Duration::from_micros(incoming.envelope.id * 7919 % 3000);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                replier.reply(&incoming.peer, re(&incoming)).unwrap();
            });
        }
        (first, second)
    });

    assert_eq!(many_calls(&client, TASKS, CALLS).await, CALLS);
    assert_eq!(many_calls(&client, TASKS, CALLS).await, CALLS);
    assert_eq!(answered.await.unwrap(), (CALLS, CALLS));
}

#[tokio::test]
async fn a_call_without_reply_times_out() {
    let (_bus, mut server, client) = admitted_client("carol");

    // The caller's deadline is far off, but it waits only 300 ms itself.
    let mut slow = request("slow", b"");
    slow.deadline_ms = sluice_core::now_ms() + 10_000;
    let started = Instant::now();
    let err = client
        .call(slow, Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = started.elapsed();
    match err {
        BusError::Timeout { method, after } => {
            assert_eq!(method, "slow");
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1300), "{took:?}");

    // The request did arrive; answering it late harms nothing.
    let late = recv_within(&mut server, Duration::from_secs(2))
        .await
        .expect("the request");
    assert_eq!(late.envelope.method, "slow");
    let replier = server.replier();
    replier.reply(&late.peer, reply_to(&late.envelope)).unwrap();

    // A request whose deadline passed before the server read it is dropped unread.
    let mut expired = request("expired", b"");
    expired.deadline_ms = sluice_core::now_ms() - 1;
    let err = client
        .call(expired, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");

    let next = tokio::spawn(async move {
        let incoming = recv_within(&mut server, Duration::from_secs(5))
            .await
            .expect("the next request");
        replier
            .reply(&incoming.peer, reply_to(&incoming.envelope))
            .unwrap();
        incoming.envelope.method
    });
    let reply = client
        .call(request("fast", b"x"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply.method, "fast");
    assert_eq!(next.await.unwrap(), "fast");
}

#[tokio::test]
async fn an_unregistered_key_is_refused_in_the_handshake() {
    let Cluster {
        bus,
        keys,
        server_key,
        mut server,
    } = cluster();
    let stranger = KeyPair::generate();
    let client = bus
        .connect(server.endpoint(), server_key.public(), &stranger)
        .unwrap();

    let err = client
        .call(request("status", b""), Duration::from_millis(700))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");
    assert!(
        recv_within(&mut server, Duration::from_millis(300))
            .await
            .is_none(),
        "the server must never see a refused client's message"
    );
    assert_eq!(keys.asked(), vec![*stranger.public()]);
}

#[tokio::test]
async fn a_wrong_server_key_fails_the_handshake() {
    let Cluster {
        bus,
        keys,
        mut server,
        ..
    } = cluster();
    let client_key = KeyPair::generate();
    keys.admit(&client_key, "dave");
    let impostor = KeyPair::generate();
    let client = bus
        .connect(server.endpoint(), impostor.public(), &client_key)
        .unwrap();

    let err = client
        .call(request("status", b""), Duration::from_millis(700))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");
    assert!(recv_within(&mut server, Duration::from_millis(300))
        .await
        .is_none());
    // The server could not even read the client's hello, so it never got to the key.
    assert!(keys.asked().is_empty());
}

#[tokio::test]
async fn pub_sub_delivers_the_subscribed_topics() {
    let keys = Arc::new(Keys::default());
    let bus = Bus::new(keys.clone()).unwrap();
    let server_key = KeyPair::generate();
    let publisher = bus.publisher("tcp://127.0.0.1:0", &server_key).unwrap();
    let sub_key = KeyPair::generate();
    keys.admit(&sub_key, "gateway");
    let mut subscriber = bus
        .subscribe(
            publisher.endpoint(),
            server_key.public(),
            &sub_key,
            &["process"],
        )
        .unwrap();

    let event = |method: &str| Envelope {
        method: method.into(),
        kind: Kind::Event as i32,
        ..Default::default()
    };
    // A subscription takes a moment to reach the publisher: publish until one arrives. The
    // unsubscribed topic goes first each round, so a missing filter would show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (topic, envelope) = loop {
        assert!(Instant::now() < deadline, "nothing arrived");
        publisher.publish("registry", &event("registry")).unwrap();
        publisher
            .publish("process-aborted", &event("aborted"))
            .unwrap();
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(100), subscriber.recv()).await {
            break got.expect("a message");
        }
    };
    assert_eq!(topic, "process-aborted");
    assert_eq!(envelope.method, "aborted");
    assert_eq!(envelope.kind, Kind::Event as i32);
    // Everything that follows is of the subscribed topic too.
    while let Ok(Some((topic, _))) =
        tokio::time::timeout(Duration::from_millis(200), subscriber.recv()).await
    {
        assert_eq!(topic, "process-aborted");
    }
    assert_eq!(keys.asked(), vec![*sub_key.public()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_can_call_down_a_dealer() {
    let Cluster {
        bus,
        keys,
        server_key,
        mut server,
    } = cluster();
    let child_key = KeyPair::generate();
    keys.admit(&child_key, "child");
    let child = bus
        .connect(server.endpoint(), server_key.public(), &child_key)
        .unwrap();
    let mut from_master = child.incoming().expect("incoming, once");
    assert!(child.incoming().is_none());

    // The child introduces itself, so the master learns its routing id.
    let replier = server.replier();
    let master = tokio::spawn(async move {
        let register = recv_within(&mut server, Duration::from_secs(5))
            .await
            .expect("register");
        replier
            .reply(&register.peer, reply_to(&register.envelope))
            .unwrap();
        let ping = Envelope {
            id: 777,
            method: "ping".into(),
            kind: Kind::Request as i32,
            ..Default::default()
        };
        replier.reply(&register.peer, ping).unwrap();
        let answer = recv_within(&mut server, Duration::from_secs(5))
            .await
            .expect("the child's answer");
        (register.peer, answer)
    });
    child
        .call(request("register", b""), Duration::from_secs(5))
        .await
        .unwrap();
    let ping = tokio::time::timeout(Duration::from_secs(5), from_master.recv())
        .await
        .expect("the master's ping in time")
        .expect("a ping");
    assert_eq!(ping.method, "ping");
    assert_eq!(ping.id, 777);
    assert_eq!(ping.kind, Kind::Request as i32);
    let mut pong = reply_to(&ping);
    pong.body = b"pong".to_vec();
    child.send(pong).unwrap();

    let (peer, answer) = master.await.unwrap();
    assert_eq!(answer.peer, peer);
    assert_eq!(answer.peer.user_id, "child");
    assert_eq!(answer.envelope.id, 777);
    assert_eq!(answer.envelope.kind, Kind::Reply as i32);
    assert_eq!(answer.envelope.body, b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_do_not_stop_the_server() {
    let Cluster {
        bus,
        keys,
        server_key,
        mut server,
    } = cluster();
    let raw_key = KeyPair::generate();
    keys.admit(&raw_key, "raw");
    let endpoint = server.endpoint().to_string();

    let replier = server.replier();
    let echo = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(incoming) = recv_within(&mut server, Duration::from_secs(5)).await {
            replier
                .reply(&incoming.peer, reply_to(&incoming.envelope))
                .unwrap();
            seen.push(incoming.envelope.method.clone());
            if seen.len() == 2 {
                break;
            }
        }
        seen
    });

    // A bare zmq DEALER with a valid key sends garbage, then a good request.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(5000).unwrap();
    raw.set_curve_serverkey(server_key.public()).unwrap();
    raw.set_curve_publickey(raw_key.public()).unwrap();
    raw.set_curve_secretkey(raw_key.secret()).unwrap();
    raw.connect(&endpoint).unwrap();
    // Not protobuf: a field with the invalid wire type 7.
    raw.send(&[0xffu8, 0xff, 0xff, 0xff][..], 0).unwrap();
    // Too many frames.
    raw.send_multipart([&b"a"[..], b"b", b"c"], 0).unwrap();
    // An empty frame decodes as an empty Envelope: not malformed, just a request with no
    // method, which the server still hands over.
    let good = Envelope {
        id: 5,
        method: "after-garbage".into(),
        kind: Kind::Request as i32,
        ..Default::default()
    };
    raw.send(prost::Message::encode_to_vec(&good), 0).unwrap();
    let reply = raw.recv_bytes(0).expect("an answer to the good request");
    let reply: Envelope = prost::Message::decode(reply.as_slice()).unwrap();
    assert_eq!(reply.id, 5);
    assert_eq!(reply.method, "after-garbage");

    // And a wrapper client is served as well.
    let client_key = KeyPair::generate();
    keys.admit(&client_key, "client");
    let client = bus
        .connect(&endpoint, server_key.public(), &client_key)
        .unwrap();
    let reply = client
        .call(request("still-alive", b""), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply.method, "still-alive");
    assert_eq!(echo.await.unwrap(), vec!["after-garbage", "still-alive"]);
    drop(raw);
}
